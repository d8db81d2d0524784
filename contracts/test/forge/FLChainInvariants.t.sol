// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {FLToken} from "../../FLToken.sol";
import {ParticipantRegistry} from "../../ParticipantRegistry.sol";
import {TrainingTask} from "../../TrainingTask.sol";
import {ITrainingTask} from "../../interfaces/ITrainingTask.sol";
import {FLChainHandler} from "./FLChainHandler.sol";
import {ForgeTest} from "./Vm.sol";

/// @notice The ledger invariants of issues 2 and 13 over random call sequences of {FLChainHandler}:
/// tokens are conserved, nobody claims twice or more than credited, a round credits at most
/// its budget, slashing never exceeds a stake, outsiders never commit or attest; every recorded
/// commit is slashable until revealed and counted once, no stake leaves before its slash windows
/// closed, and claims pay only what the latest finalized root credits.
contract FLChainInvariantsTest is ForgeTest {
    uint256 internal constant FUNDING = 50_000;

    FLToken internal token;
    ParticipantRegistry internal registry;
    TrainingTask internal task;
    FLChainHandler internal handler;
    uint256 internal minted;

    function setUp() public {
        token = new FLToken("FLChain Token", "FLC", address(this));
        // The shortest unbonding the task accepts (the deployment default): a round of 12 blocks,
        // one block, and an attest phase of 4, so slash-escape attempts meet the boundary.
        registry = new ParticipantRegistry(token, 1_000, 17, false, address(this));
        task = new TrainingTask(_config(), registry, token, address(this));
        registry.grantRole(registry.SLASHER_ROLE(), address(task));
        handler = new FLChainHandler(token, registry, task);
        token.mint(address(this), FUNDING);
        token.approve(address(task), FUNDING);
        task.fund(FUNDING);
        minted = FUNDING;
        for (uint256 i = 0; i < handler.ACTORS(); ++i) {
            token.mint(handler.actors(i), 3_000);
            minted += 3_000;
            handler.register(i); // start with everyone bonded, so rounds get going at once
        }
        token.mint(handler.outsider(), 3_000);
        minted += 3_000;
        task.start();
    }

    /// @dev forge-std's `targetContract`: only the handler is called by the fuzzer.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function invariant_tokensAreConserved() public view {
        uint256 held = token.balanceOf(address(this)) + token.balanceOf(address(registry))
            + token.balanceOf(address(task)) + token.balanceOf(handler.outsider());
        uint256 stakes;
        uint256 owed;
        for (uint256 i = 0; i < handler.ACTORS(); ++i) {
            address a = handler.actors(i);
            held += token.balanceOf(a);
            stakes += registry.stakeOf(a);
            owed += task.feesOwed(a);
        }
        require(held == minted && token.totalSupply() == minted, "tokens created or destroyed");
        require(token.balanceOf(address(registry)) == stakes, "registry holds other than the stakes");
        uint256 unclaimed = task.totalCredited() - task.totalClaimed();
        require(
            token.balanceOf(address(task)) == task.pool() + task.feesReserved() + owed + unclaimed,
            "task balance differs from pool + fees + unclaimed rewards"
        );
    }

    function invariant_noDoubleOrOverClaim() public view {
        require(task.totalClaimed() <= task.totalCredited(), "claimed more than credited");
        require(task.totalCredited() == handler.ghostCredited(), "credits differ from the roots");
        for (uint256 i = 0; i < handler.ACTORS(); ++i) {
            address a = handler.actors(i);
            require(task.claimed(a) <= handler.credited(a), "account claimed above its credit");
        }
        require(task.claimed(handler.outsider()) == 0, "outsider claimed");
    }

    function invariant_roundCreditsWithinBudget() public view {
        ITrainingTask.TaskConfig memory cfg = task.config();
        uint256 current = task.currentRound();
        for (uint256 r = 0; r < current; ++r) {
            ITrainingTask.RoundRecord memory rec = task.roundRecord(r);
            uint256 k = rec.commits < cfg.committeeSize ? rec.commits : cfg.committeeSize;
            require(rec.rewardTotal + k * cfg.committeeFee <= cfg.roundBudget, "round over budget");
        }
    }

    function invariant_slashNeverExceedsStake() public view {
        require(handler.slashAboveStake() == 0, "a slash raised a stake");
        for (uint256 i = 0; i < handler.ACTORS(); ++i) {
            require(registry.stakeOf(handler.actors(i)) <= 3_000, "stake above what was bonded");
        }
    }

    /// @dev Hole 1: a commitment is never mistaken for "none" (zero-prefix values included).
    function invariant_everyCommitIsCountedOnceAndSlashable() public view {
        require(!handler.doubleCommit(), "an account committed twice in one round");
        require(!handler.commitLost(), "a recorded commitment could not be slashed");
        require(task.roundRecord(task.currentRound()).commits <= handler.ACTORS(), "more commits than accounts");
    }

    /// @dev Hole 2: no stake leaves before every slash window it is exposed to has closed.
    function invariant_noStakeLeavesBeforeItsSlashWindowsClose() public view {
        require(!handler.stakeEscaped(), "a stake left while still slashable");
    }

    /// @dev Hole 3: every payment is what the latest finalized root credits, and the total paid
    /// stays within the budgets the finalized rounds credited.
    function invariant_claimsPayOnlyTheLatestRoot() public view {
        require(!handler.paidBeyondLatestRoot(), "a claim paid other than the latest root's credit");
        require(task.totalClaimed() <= task.totalCredited(), "paid more than credited");
        ITrainingTask.TaskConfig memory cfg = task.config();
        require(task.totalCredited() <= uint256(task.finalizedRounds()) * cfg.roundBudget, "credited over budget");
    }

    /// @dev Hole 3, the budget bound: accounts were paid beyond what sound rounds credited them at
    /// most the colluding rounds' own reward totals, and the latest root has no more credit left
    /// to draw than its round's total.
    function invariant_colludingRoundsMisassignOnlyTheirOwnBudget() public view {
        uint256 beyond;
        for (uint256 i = 0; i < handler.ACTORS(); ++i) {
            address a = handler.actors(i);
            uint256 paid = task.claimed(a);
            uint256 owed = handler.honestCredited(a);
            if (paid > owed) beyond += paid - owed;
        }
        require(beyond <= handler.colludingBudget(), "a colluding round paid out beyond its own budget");
        if (task.finalizedRounds() > 0) {
            uint256 total = task.roundRecord(task.rewardRound()).rewardTotal;
            require(task.rewardCreditLeft() <= total, "more credit left than the round credited");
        }
    }

    function invariant_outsidersNeverCommitOrAttest() public view {
        require(!handler.outsiderGotIn(), "an outsider committed or attested");
    }

    function _config() internal pure returns (ITrainingTask.TaskConfig memory) {
        return ITrainingTask.TaskConfig({
            manifestCid: "bafymanifest",
            manifestDigest: bytes32(uint256(1)),
            modelSpecDigest: bytes32(uint256(2)),
            aggregationRule: 2,
            ruleParams: bytes32(uint256(3)),
            committeeSize: 3,
            quorum: 2,
            commitBlocks: 4,
            revealBlocks: 4,
            attestBlocks: 4,
            maxParticipants: 6,
            minReveals: 2,
            rounds: 20,
            roundBudget: 2_000,
            committeeFee: 50,
            nonRevealSlash: 30,
            committeeSlash: 40,
            maxSamples: 1_000,
            initialModelCid: "bafyinit",
            initialModelDigest: bytes32(uint256(4))
        });
    }
}
