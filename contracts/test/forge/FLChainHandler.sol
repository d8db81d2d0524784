// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {FLToken} from "../../FLToken.sol";
import {ParticipantRegistry} from "../../ParticipantRegistry.sol";
import {TrainingTask} from "../../TrainingTask.sol";
import {ITrainingTask} from "../../interfaces/ITrainingTask.sol";
import {ForgeTest} from "./Vm.sol";

/// @title FLChainHandler (test only)
/// @notice The moves of the invariant fuzzer: each call picks an actor and plays one protocol
/// step (register, commit, reveal, attest honestly or not, expire, slash, settle, claim, exit)
/// or lets blocks pass, plus the attacks of issue 13: zero-prefix commitments, commit-and-exit in
/// the block a round starts, colluding committees and claims against older roots. Calls that the contracts refuse simply revert; the ghost variables
/// record only what succeeded, for the invariants to compare with the contracts' books.
contract FLChainHandler is ForgeTest {
    uint256 public constant ACTORS = 6;
    uint256 public constant STAKE = 1_000;

    FLToken public immutable token;
    ParticipantRegistry public immutable registry;
    TrainingTask public immutable task;
    address public immutable outsider = address(0xBAD);

    address[ACTORS] public actors;
    /// @notice Cumulative reward each actor was credited by finalized rounds.
    mapping(address account => uint256) public credited;
    /// @notice Rewards credited in total by finalized rounds, per the ghost books.
    uint256 public ghostCredited;
    /// @notice Cumulative reward each actor was credited by sound rounds (a root that extends
    /// the sound credits by its own total): what it is owed. Colluding rounds are left out.
    mapping(address account => uint256) public honestCredited;
    /// @notice Reward totals the colluding rounds reported: all they may misassign (hole 3).
    uint256 public colludingBudget;
    /// @notice Whether the latest finalized round was a colluding one.
    bool public latestColluding;
    /// @notice Set if an outsider's commit or attest ever succeeded.
    bool public outsiderGotIn;
    /// @notice Largest single slash seen minus the stake it was taken from (0 if never above).
    uint256 public slashAboveStake;
    /// @notice Set if an account committed twice in one round (issue 13, hole 1).
    bool public doubleCommit;
    /// @notice Set if a recorded, unrevealed, unreplaced commitment could not be slashed because
    /// the contract did not see it (issue 13, hole 1).
    bool public commitLost;
    /// @notice Set if a stake was withdrawn before an attest phase had passed since the last slash
    /// window of its latest commitment opened (issue 13, hole 2).
    bool public stakeEscaped;
    /// @notice Set if a claim paid an account other than exactly what the latest finalized root
    /// credits it (issue 13, hole 3).
    bool public paidBeyondLatestRoot;
    /// @notice Latest finalized round per the ghost books (valid once `anyFinalized`).
    uint256 public latestFinalized;
    bool public anyFinalized;
    /// @notice Rounds a colluding committee finalized (so the fuzzer's theft attempts are real).
    uint256 public colludingRoundsFinalized;
    uint256 public calls;

    struct Credit {
        address account;
        uint256 cumulative;
        uint256 rewardTotal;
        bool sound;
    }

    mapping(bytes32 resultHash => Credit) private _credits;
    mapping(address account => bytes32[3]) private _secret; // digest, salt, samples of the last commit
    mapping(uint256 round => Credit) private _finalCredit;
    mapping(uint256 round => mapping(address account => bool)) private _committedIn;
    mapping(address account => bool) private _everCommitted;
    mapping(address account => uint256) private _lastCommitRound;
    uint256[] private _finalized;
    uint256 private _nonce;

    constructor(FLToken token_, ParticipantRegistry registry_, TrainingTask task_) {
        (token, registry, task) = (token_, registry_, task_);
        for (uint256 i = 0; i < ACTORS; ++i) {
            actors[i] = address(uint160(0xA000 + i));
        }
    }

    function actorAt(uint256 seed) public view returns (address) {
        return actors[seed % ACTORS];
    }

    // --- participants ---------------------------------------------------------------------

    function register(uint256 seed) external {
        address a = actorAt(seed);
        calls++;
        vm.prank(a);
        token.approve(address(registry), STAKE);
        vm.prank(a);
        registry.register(STAKE);
    }

    function commit(uint256 seed) external {
        address a = actorAt(seed);
        calls++;
        uint256 round = task.currentRound();
        bytes32 digest = keccak256(abi.encode("update", a, round, ++_nonce));
        bytes32 salt = keccak256(abi.encode("salt", _nonce));
        uint256 samples = 1 + _nonce % 1000;
        _secret[a] = [digest, salt, bytes32(samples)];
        bytes32 commitment = task.commitmentHash(a, round, digest, samples, salt);
        _commit(a, round, commitment);
    }

    /// @notice An actor commits a value whose first 24 bytes are zero (it cannot reveal it).
    function commitZeroPrefix(uint256 seed, uint64 low) external {
        calls++;
        _commit(actorAt(seed), task.currentRound(), bytes32(uint256(low)));
    }

    /// @notice An actor commits and asks to leave in the same block (the slash-escape attempt).
    function commitAndExit(uint256 seed) external {
        address a = actorAt(seed);
        this.commit(seed);
        vm.prank(a);
        registry.requestWithdrawal();
    }

    function reveal(uint256 seed) external {
        calls++;
        // Steer to an actor with an unrevealed commitment of this round, so reveals happen.
        address a = actorAt(seed);
        uint256 round = task.currentRound();
        for (uint256 i = 0; i < ACTORS; ++i) {
            ITrainingTask.Commitment memory c = task.commitmentOf(actorAt(seed + i));
            if (c.flags & 32 != 0 && c.round == round && c.flags & 1 == 0) {
                a = actorAt(seed + i);
                break;
            }
        }
        bytes32[3] memory s = _secret[a];
        vm.prank(a);
        task.reveal(s[0], uint256(s[2]), s[1], "bafyupdate");
    }

    /// @notice A committee member attests a result crediting `amount` to one actor; members
    /// with `honest` false vote for a diverging result (a colluding minority or a liar).
    function attest(uint256 seed, uint256 beneficiarySeed, uint256 amount, bool honest) external {
        calls++;
        uint256 round = task.currentRound();
        address a = actorAt(seed);
        for (uint256 i = 0; i < ACTORS; ++i) {
            address m = actorAt(seed + i);
            if (task.isCommitteeMember(round, m) && task.voteOf(round, m).resultHash == 0) {
                a = m;
                break;
            }
        }
        if (honest) {
            // Honest members recompute the same result, so their votes can reach the quorum.
            (beneficiarySeed, amount) = (round, uint256(keccak256(abi.encode(round))));
        }
        address beneficiary = actorAt(beneficiarySeed);
        ITrainingTask.TaskConfig memory cfg = task.config();
        amount = bound(amount, 0, cfg.roundBudget); // above the cap on purpose, sometimes
        bytes32 model = keccak256(abi.encode("model", round, honest));
        // Built on the sound credits, as honest members do (a liar's result too: it misassigns
        // at most its own total, so it is a sound extension).
        _attestAs(a, round, model, beneficiary, honestCredited[beneficiary] + amount, amount, false, true);
    }

    /// @notice A colluding committee: every member of the current round votes for one root that
    /// credits `beneficiary` `inflation` above its due while reporting a tiny `rewardTotal`.
    /// Never right after another colluding round: two in a row are beyond the trust limit (the
    /// second builds on the first's unchecked root).
    function colludeRound(uint256 beneficiarySeed, uint256 inflation) external {
        calls++;
        if (latestColluding) return;
        uint256 round = task.currentRound();
        address beneficiary = actorAt(beneficiarySeed);
        // Within what earlier rounds credited and left unclaimed (the theft of hole 3).
        uint256 cumulative = honestCredited[beneficiary] + 1 + bound(inflation, 0, 3_000);
        bytes32 model = keccak256(abi.encode("colluding model", round));
        for (uint256 i = 0; i < ACTORS; ++i) {
            address m = actors[i];
            if (task.isCommitteeMember(round, m) && task.voteOf(round, m).resultHash == 0) {
                if (_attestAs(m, round, model, beneficiary, cumulative, 1, true, false)) {
                    colludingRoundsFinalized++;
                }
            }
        }
    }

    /// @notice A whole round in one step: every active actor commits and reveals, then the
    /// committee attests; `liars` members (at most a minority) vote for a diverging result.
    function playRound(uint256 liars, uint256 amount) external {
        _commitRevealAll();
        liars = bound(liars, 0, 1);
        for (uint256 i = 0; i < ACTORS; ++i) {
            try this.attest(i, i + 1, amount, i >= liars) {} catch {}
        }
    }

    /// @notice A whole round whose committee colludes (see {colludeRound}).
    function playColludingRound(uint256 beneficiarySeed, uint256 inflation) external {
        _commitRevealAll();
        uint256 before = colludingRoundsFinalized;
        this.colludeRound(beneficiarySeed, inflation);
        if (colludingRoundsFinalized == before) return;
        // The beneficiary tries to take the loot at once, without and with its baseline.
        try this.claim(0, 0, false) {} catch {}
        try this.claim(0, 0, true) {} catch {}
    }

    /// @dev Every active actor commits and reveals; then the last block before the attest deadline.
    function _commitRevealAll() private {
        for (uint256 i = 0; i < ACTORS; ++i) {
            try this.commit(i) {} catch {}
        }
        vm.roll(block.number + 5);
        for (uint256 i = 0; i < ACTORS; ++i) {
            try this.reveal(i) {} catch {}
        }
        vm.roll(task.attestDeadline(task.currentRound()) - 1);
    }

    function expire() external {
        calls++;
        task.expireRound();
    }

    function closeCommitPhase() external {
        calls++;
        task.closeCommitPhase();
    }

    /// The current round or one up to `roundsBack` before it (fuzzed).
    function _roundBack(uint256 roundsBack) internal view returns (uint256) {
        uint256 round = task.currentRound();
        return round - bound(roundsBack, 0, round);
    }

    function slashNonRevealer(uint256 seed, uint256 roundsBack) external {
        address a = actorAt(seed);
        calls++;
        uint256 round = _roundBack(roundsBack);
        uint256 before = registry.stakeOf(a);
        try task.slashNonRevealer(round, a) {
            _checkSlash(a, before);
        } catch (bytes memory reason) {
            // The latest commitment of `a` is of `round`: the contract must know it.
            if (
                bytes4(reason) == ITrainingTask.NoCommitment.selector && _everCommitted[a]
                    && _lastCommitRound[a] == round
            ) commitLost = true;
            revert("refused");
        }
    }

    function settle(uint256 seed, uint256 roundsBack) external {
        address a = actorAt(seed);
        calls++;
        uint256 round = _roundBack(roundsBack);
        uint256 before = registry.stakeOf(a);
        task.settleCommitteeMember(round, a);
        _checkSlash(a, before);
    }

    function claim(uint256 seed, uint256 roundsBack, bool baseline) external {
        address a = actorAt(seed);
        calls++;
        // A finalized round, the latest or (often) an older one: older roots must not pay.
        uint256 n = _finalized.length;
        uint256 round = n == 0 ? task.currentRound() : _finalized[n - 1 - bound(roundsBack, 0, n - 1)];
        Credit memory c = _finalCredit[round];
        if (seed % 2 == 0 && c.account != address(0)) a = c.account; // often the root's own payee
        // Claim what the final root lists, for its beneficiary or (a theft) for someone else.
        uint256 amount = c.account == a ? c.cumulative : credited[c.account];
        // The baseline: `a`'s credit under the finalized root before `round`, when that root's
        // one leaf is `a`'s (a one-leaf root needs no proof), or none.
        uint256 previous;
        for (uint256 i = n; i > 1 && baseline; --i) {
            if (_finalized[i - 1] != round) continue;
            Credit memory p = _finalCredit[_finalized[i - 2]];
            if (p.account == a) previous = p.cumulative;
            break;
        }
        vm.prank(a);
        task.claim(round, amount, new bytes32[](0), previous, new bytes32[](0));
        // Paid exactly up to the latest root's credit for `a`, never from an older root.
        Credit memory latest = _finalCredit[latestFinalized];
        if (!anyFinalized || latest.account != a || task.claimed(a) != latest.cumulative) {
            paidBeyondLatestRoot = true;
        }
    }

    function withdrawFees(uint256 seed) external {
        calls++;
        vm.prank(actorAt(seed));
        task.withdrawFees();
    }

    function requestWithdrawal(uint256 seed) external {
        calls++;
        vm.prank(actorAt(seed));
        registry.requestWithdrawal();
    }

    function withdraw(uint256 seed) external {
        calls++;
        address a = actorAt(seed);
        vm.prank(a);
        registry.withdraw();
        if (_everCommitted[a]) {
            // Slashes of the latest commitment are provable from attestEnd + 1; the stake must
            // stay bonded for one more attest phase after that.
            uint256 attestEnd = task.attestDeadline(_lastCommitRound[a]);
            if (block.number <= attestEnd + task.config().attestBlocks) stakeEscaped = true;
        }
    }

    function passBlocks(uint256 blocks) external {
        calls++;
        vm.roll(block.number + bound(blocks, 1, 6));
    }

    // --- outsiders: must always be refused ---------------------------------------------------

    function outsiderCommit(bytes32 commitment) external {
        calls++;
        vm.prank(outsider);
        try task.commit(commitment) {
            outsiderGotIn = true;
        } catch {}
    }

    function outsiderAttest(uint256 amount) external {
        calls++;
        ITrainingTask.Result memory result;
        result.rewardTotal = bound(amount, 0, 100);
        uint256 round = task.currentRound();
        vm.prank(outsider);
        try task.attest(round, result) {
            outsiderGotIn = true;
        } catch {}
    }

    // --- helpers ----------------------------------------------------------------------------

    function _commit(address a, uint256 round, bytes32 commitment) private {
        vm.prank(a); // after computing the argument: a prank applies to the next call only
        task.commit(commitment);
        if (_committedIn[round][a]) doubleCommit = true;
        _committedIn[round][a] = true;
        (_everCommitted[a], _lastCommitRound[a]) = (true, round);
    }

    function _attestAs(
        address member,
        uint256 round,
        bytes32 modelDigest,
        address beneficiary,
        uint256 cumulative,
        uint256 rewardTotal,
        bool mayFail,
        bool sound
    ) private returns (bool finalized) {
        ITrainingTask.Result memory result = ITrainingTask.Result({
            modelDigest: modelDigest,
            modelCid: "bafymodel",
            reportDigest: keccak256(abi.encode("report", round)),
            reportCid: "bafyreport",
            rewardRoot: _leaf(beneficiary, cumulative),
            rewardTotal: rewardTotal
        });
        bytes32 h = task.hashResult(result);
        if (_credits[h].account == address(0)) _credits[h] = Credit(beneficiary, cumulative, rewardTotal, sound);
        uint256 finalizedBefore = task.finalizedRounds();
        vm.prank(member);
        if (mayFail) {
            try task.attest(round, result) {} catch {
                return false;
            }
        } else {
            task.attest(round, result);
        }
        finalized = task.finalizedRounds() > finalizedBefore;
        if (finalized) {
            Credit memory c = _credits[h];
            _finalCredit[round] = c;
            ghostCredited += c.rewardTotal;
            if (c.cumulative > credited[c.account]) credited[c.account] = c.cumulative;
            if (c.sound) {
                if (c.cumulative > honestCredited[c.account]) honestCredited[c.account] = c.cumulative;
            } else {
                colludingBudget += c.rewardTotal;
            }
            latestColluding = !c.sound;
            (latestFinalized, anyFinalized) = (round, true);
            _finalized.push(round);
        }
    }

    function _leaf(address account, uint256 cumulative) private pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account, cumulative))));
    }

    function _checkSlash(address account, uint256 before) private {
        uint256 after_ = registry.stakeOf(account);
        if (after_ > before) slashAboveStake = type(uint256).max; // stake grew from a slash?!
    }
}
