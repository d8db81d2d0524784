// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title CommitteeSampler
/// @notice A pseudorandom permutation of the commit indices `[0, n)` keyed by a round's seed; the
/// committee is the `k` indices whose permuted position is below `k`.
/// @dev Rejection sampling would need all `k` draws (and `k^2` comparisons) to answer one
/// membership question. A keyed permutation answers it in O(1), which lets every reveal record
/// whether its sender sits on the committee. The permutation is a 4-round Feistel network over
/// the smallest even-bit domain `4^h >= n`, with cycle walking to stay inside `[0, n)`
/// (expected fewer than 4 steps, since `4^h < 4n`). Round function: the low `h` bits of
/// `keccak256(abi.encode(seed, (round << 32) | half))`.
library CommitteeSampler {
    uint256 private constant _ROUNDS = 4;

    /// @notice Position of commit index `index` (`< n`) in the permutation keyed by `seed`.
    /// @dev Runs in every reveal of a round with more committers than seats, so the 4 Feistel
    /// rounds are unrolled in assembly with the seed kept in scratch space across the calls of
    /// the round function (same permutation as the Solidity {_decrypt} inverts: the forge fuzz
    /// test `CommitteeSampler.t.sol` checks both directions, the pytest suite the Python sampler).
    function position(uint256 seed, uint256 n, uint256 index) internal pure returns (uint256 pos) {
        uint256 h = _halfBits(n);
        uint256 mask;
        unchecked {
            mask = (1 << h) - 1; // h >= 1
        }
        assembly ("memory-safe") {
            mstore(0x00, seed)
            pos := index
            for {} 1 {} {
                // Round i maps (l, r) to (r, l ^ f_i(r)); updating l and r in place in turn
                // leaves (l, r) in order after an even number of rounds.
                let l := shr(h, pos)
                let r := and(pos, mask)
                mstore(0x20, r)
                l := xor(l, and(keccak256(0x00, 0x40), mask))
                mstore(0x20, or(shl(32, 1), l))
                r := xor(r, and(keccak256(0x00, 0x40), mask))
                mstore(0x20, or(shl(32, 2), r))
                l := xor(l, and(keccak256(0x00, 0x40), mask))
                mstore(0x20, or(shl(32, 3), l))
                r := xor(r, and(keccak256(0x00, 0x40), mask))
                pos := or(shl(h, l), r)
                if lt(pos, n) { break }
            }
        }
    }

    /// @notice The commit index at position `pos` (`< n`): the inverse of {position}.
    function indexAt(uint256 seed, uint256 n, uint256 pos) internal pure returns (uint256 index) {
        uint256 h = _halfBits(n);
        index = _decrypt(seed, h, pos);
        while (index >= n) index = _decrypt(seed, h, index);
    }

    /// @dev Smallest `h >= 1` with `4^h >= n`; `n < 2^24` bounds the loop to 12 steps.
    function _halfBits(uint256 n) private pure returns (uint256 h) {
        h = 1;
        while ((1 << (2 * h)) < n) ++h;
    }

    function _decrypt(uint256 seed, uint256 h, uint256 y) private pure returns (uint256) {
        uint256 mask = (1 << h) - 1;
        (uint256 l, uint256 r) = (y >> h, y & mask);
        for (uint256 i = _ROUNDS; i > 0; --i) {
            (l, r) = (r ^ (_f(seed, i - 1, l) & mask), l);
        }
        return (l << h) | r;
    }

    function _f(uint256 seed, uint256 i, uint256 half) private pure returns (uint256 out) {
        // Scratch space (0x00-0x3f) avoids allocating memory for each of the many small hashes.
        assembly ("memory-safe") {
            mstore(0x00, seed)
            mstore(0x20, or(shl(32, i), half))
            out := keccak256(0x00, 0x40)
        }
    }
}
