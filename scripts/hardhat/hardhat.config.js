// Minimal Hardhat 2 config for `hardhat node` as a test chain (flchain.ledger.nodes.HardhatProcess).
// It lives here, not at the repository root, so Hardhat never tries to compile the repo's
// contracts (they are built by scripts/compile_contracts.py). Accounts: the dev mnemonic the
// embedded chain and anvil fund, at the default path m/44'/60'/0'/0/i.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // The contracts are compiled for Prague (scripts/compile_contracts.py): MCOPY, transient storage.
      hardfork: "prague",
      // Each transaction is mined at once; FLCHAIN_BLOCK_INTERVAL_MS > 0 adds interval mining.
      mining: { auto: true, interval: Number(process.env.FLCHAIN_BLOCK_INTERVAL_MS || "0") },
      accounts: {
        mnemonic: process.env.FLCHAIN_MNEMONIC || "test test test test test test test test test test test junk",
        count: Number(process.env.FLCHAIN_ACCOUNTS || "20"),
      },
    },
  },
};
