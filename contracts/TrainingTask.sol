// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";
import {ITrainingTask} from "./interfaces/ITrainingTask.sol";
import {CommitteeSampler} from "./libraries/CommitteeSampler.sol";

/// @title TrainingTask
/// @notice One federated-learning task. The owner starts it; then each round: participants commit
/// to an update, reveal it, a committee drawn from the committers after the commit phase attests
/// the recomputed result, and the first result to reach quorum finalizes the round and starts the
/// next one.
/// @dev Gas shape: commit, reveal, attest, claim and every settlement touch O(1) storage (loops
/// are bounded by the committee size, at most 32). The current round lives in one packed slot
/// (`_current`); each participant's commitment in one slot reused across rounds; a round's record
/// is archived once when it closes. Rewards are credited as a cumulative Merkle root per round.
///
/// Trust limit: a colluding committee majority can publish any reward root. Claims are proven
/// only against the latest finalized round's root, so a root stops paying as soon as the next
/// round finalizes and can never reach credits of later rounds; each round credits at most
/// `roundBudget` minus committee fees, and the contract never pays out more than it credited in
/// total. A claim may pay above the claimant's baseline (what it claimed, or what the previous
/// finalized root credits it, proven) at most the round's `rewardTotal` in total over all
/// claimants, so a colluding round misassigns at most its own budget: the unclaimed credits of
/// earlier rounds stay with their owners. Two consecutive colluding rounds are beyond this: the
/// second takes the first's unchecked root as baselines (see contracts/README.md).
contract TrainingTask is ITrainingTask, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev The hot state of the current round, packed into one slot read by every commit/reveal.
    struct CurrentRound {
        uint32 round;
        uint40 commitEnd;
        uint40 revealEnd;
        uint24 commits;
        uint24 reveals;
        uint96 seed;
    }

    uint8 private constant _REVEALED = 1;
    uint8 private constant _MEMBER = 2;
    uint8 private constant _ATTESTED = 4;
    uint8 private constant _NONREVEAL_SLASHED = 8;
    uint8 private constant _SILENCE_SLASHED = 16;
    /// @dev Marks a stored commitment. Existence is never read from the hash: a commitment is
    /// caller-chosen bytes, and one whose first 24 bytes are zero must count like any other.
    uint8 private constant _COMMITTED = 32;
    uint256 private constant _MAX_COMMITTEE = 32;

    /// @notice The participant registry whose active members may commit and whose stakes are slashed.
    IParticipantRegistry public immutable registry;
    /// @notice The ERC-20 token rewards and fees are paid in.
    IERC20 public immutable rewardToken;

    bytes32 private immutable _manifestDigest;
    bytes32 private immutable _modelSpecDigest;
    bytes32 private immutable _ruleParams;
    bytes32 private immutable _initialModelDigest;
    uint8 private immutable _aggregationRule;
    uint8 private immutable _committeeSize;
    uint8 private immutable _quorum;
    uint32 private immutable _commitBlocks;
    uint32 private immutable _revealBlocks;
    uint32 private immutable _attestBlocks;
    uint32 private immutable _maxParticipants;
    uint32 private immutable _minReveals;
    uint32 private immutable _rounds;
    uint64 private immutable _maxSamples;
    uint256 private immutable _roundBudget;
    uint256 private immutable _committeeFee;
    uint256 private immutable _nonRevealSlash;
    uint256 private immutable _committeeSlash;

    string private _manifestCid;
    string private _initialModelCid;

    CurrentRound private _current;
    mapping(uint256 round => RoundRecord) private _records;
    mapping(address account => Commitment) private _commitments;
    /// @dev 1 once `digest` was revealed. A whole-word value: writing a `bool` reads the slot back
    /// first to keep the other 31 bytes, 100 gas more on every reveal.
    mapping(bytes32 digest => uint256) private _revealedDigests;
    mapping(uint256 round => mapping(address member => Vote)) private _votes;
    mapping(uint256 round => mapping(bytes32 resultHash => uint256)) private _voteCounts;

    /// @notice Digest of the current global model.
    bytes32 public modelDigest;
    /// @notice CID of the current global model.
    string public modelCid;
    /// @notice Rounds finalized so far.
    uint32 public finalizedRounds;
    /// @notice The latest finalized round: the only one whose reward root `claim` accepts
    /// (meaningful once `finalizedRounds > 0`).
    uint32 public rewardRound;
    /// @notice The finalized round before `rewardRound`, whose root proves claim baselines
    /// (meaningful once `finalizedRounds > 1`).
    uint32 public previousRewardRound;
    /// @notice Whether the owner started the task (round 0 opens in that block).
    bool public started;
    /// @notice What claims may still pay above their baselines against the latest root: its
    /// round's `rewardTotal` less what claims drew from it (packed with the counters above, so
    /// finalization resets it at no extra storage write).
    uint128 public rewardCreditLeft;
    /// @notice Reward tokens not yet credited or reserved: funding plus slashes minus spending.
    uint256 public pool;
    /// @notice Committee fees reserved by finalized rounds and not yet credited or released.
    uint256 public feesReserved;
    /// @notice Rewards credited by all finalized rounds.
    uint256 public totalCredited;
    /// @notice Rewards paid out by claims.
    uint256 public totalClaimed;
    /// @notice Cumulative rewards each account has claimed.
    mapping(address account => uint256) public claimed;
    /// @notice Committee fees each member can withdraw.
    mapping(address member => uint256) public feesOwed;

    /// @param config_ Task configuration (checked; see the errors for the rules).
    /// @param registry_ Participant registry; it must grant this task `SLASHER_ROLE` for slashing.
    /// @param rewardToken_ ERC-20 token rewards and fees are paid in.
    /// @param owner_ Owner, who may withdraw the unused pool once the task completed.
    constructor(TaskConfig memory config_, IParticipantRegistry registry_, IERC20 rewardToken_, address owner_)
        Ownable(owner_)
    {
        if (address(registry_) == address(0) || address(rewardToken_) == address(0)) revert ZeroAddress();
        uint8 k = config_.committeeSize;
        if (k == 0 || k > _MAX_COMMITTEE || config_.quorum > k || 2 * uint256(config_.quorum) <= k) {
            revert InvalidCommittee(k, config_.quorum);
        }
        if (config_.commitBlocks == 0 || config_.revealBlocks == 0 || config_.attestBlocks == 0) {
            revert InvalidPhaseLengths(config_.commitBlocks, config_.revealBlocks, config_.attestBlocks);
        }
        // Every slash a commitment can incur is provable from the block after its round's attest
        // deadline, which is at most `roundBlocks` after the round started (phases only ever close
        // early); the commit, and any withdrawal request after it, came no earlier than that start.
        // So a stake whose unbonding outlasts `roundBlocks + 1 + attestBlocks` stays bonded for at
        // least `attestBlocks` blocks after every slash against it became provable: slashers get
        // as long to act as the committee got to attest.
        uint256 required =
            uint256(config_.commitBlocks) + config_.revealBlocks + 2 * uint256(config_.attestBlocks) + 1;
        uint64 unbonding = registry_.unbondingBlocks();
        if (unbonding < required) revert UnbondingTooShort(unbonding, required);
        if (
            config_.minReveals == 0 || config_.minReveals > config_.maxParticipants
                || config_.maxParticipants >= 1 << 24
        ) revert InvalidParticipantLimits(config_.maxParticipants, config_.minReveals);
        if (config_.rounds == 0 || config_.maxSamples == 0) {
            revert InvalidRoundsOrSamples(config_.rounds, config_.maxSamples);
        }
        uint256 fees = config_.committeeFee * k;
        if (fees > config_.roundBudget) revert CommitteeFeesExceedBudget(fees, config_.roundBudget);
        // A round's credit is tracked in 128 bits (`rewardCreditLeft`).
        if (config_.roundBudget > type(uint128).max) revert RoundBudgetTooLarge(config_.roundBudget);

        registry = registry_;
        rewardToken = rewardToken_;
        _manifestCid = config_.manifestCid;
        _manifestDigest = config_.manifestDigest;
        _modelSpecDigest = config_.modelSpecDigest;
        _aggregationRule = config_.aggregationRule;
        _ruleParams = config_.ruleParams;
        _committeeSize = k;
        _quorum = config_.quorum;
        _commitBlocks = config_.commitBlocks;
        _revealBlocks = config_.revealBlocks;
        _attestBlocks = config_.attestBlocks;
        _maxParticipants = config_.maxParticipants;
        _minReveals = config_.minReveals;
        _rounds = config_.rounds;
        _roundBudget = config_.roundBudget;
        _committeeFee = config_.committeeFee;
        _nonRevealSlash = config_.nonRevealSlash;
        _committeeSlash = config_.committeeSlash;
        _maxSamples = config_.maxSamples;
        _initialModelCid = config_.initialModelCid;
        _initialModelDigest = config_.initialModelDigest;
        modelDigest = config_.initialModelDigest;
        modelCid = config_.initialModelCid;
    }

    // --- start and funding ---------------------------------------------------------------

    /// @inheritdoc ITrainingTask
    function start() external onlyOwner {
        if (started) revert TaskAlreadyStarted();
        started = true;
        _startRound(0);
    }

    /// @inheritdoc ITrainingTask
    function fund(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 newPool = pool + amount;
        pool = newPool;
        emit Funded(msg.sender, amount, newPool);
        rewardToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    // --- commit and reveal ---------------------------------------------------------------

    /// @inheritdoc ITrainingTask
    function commit(bytes32 commitment) external {
        CurrentRound memory s = _current;
        if (s.commits == _maxParticipants || block.number > s.commitEnd) {
            // Before `start` the round's deadlines are all 0, so every commit lands here.
            if (!started) revert TaskNotStarted();
            if (finalizedRounds == _rounds) revert TaskCompleted();
            revert CommitPhaseClosed(s.round);
        }
        if (!registry.isActive(msg.sender)) revert NotActiveParticipant(msg.sender);
        Commitment memory old = _commitments[msg.sender];
        bool replacing = old.flags & _COMMITTED != 0;
        if (replacing && old.round == s.round) revert AlreadyCommitted(msg.sender, s.round);

        uint24 index = s.commits;
        _commitments[msg.sender] =
            Commitment({hash: bytes24(commitment), round: s.round, index: index, flags: _COMMITTED});
        s.commits = index + 1;
        if (s.commits == _maxParticipants) {
            // The commit phase closes in this block; the reveal phase runs from the next one.
            s.commitEnd = uint40(block.number);
            s.revealEnd = uint40(block.number + _revealBlocks);
        }
        _current = s;
        emit Committed(s.round, msg.sender, index, commitment);
        if (s.commits == _maxParticipants) emit PhaseClosedEarly(s.round, Phase.Commit, s.commitEnd, s.revealEnd);

        // Settle the replaced commitment last: it may call the registry, which moves tokens.
        if (replacing) _settleReplaced(msg.sender, old);
    }

    /// @inheritdoc ITrainingTask
    function closeCommitPhase() external {
        CurrentRound memory s = _current;
        if (!started) revert TaskNotStarted();
        if (s.seed != 0) revert SeedAlreadyFixed(s.round);
        if (block.number <= s.commitEnd) revert CommitPhaseOpen(s.round);
        if (finalizedRounds == _rounds) revert TaskCompleted();
        _fixSeed(s);
        _current = s;
    }

    /// @inheritdoc ITrainingTask
    function reveal(bytes32 digest, uint256 numSamples, bytes32 salt, string calldata cid) external {
        CurrentRound memory s = _current;
        if (block.number <= s.commitEnd) revert CommitPhaseOpen(s.round);
        if (block.number > s.revealEnd) revert RevealPhaseClosed(s.round);
        if (numSamples == 0 || numSamples > _maxSamples) revert InvalidSampleCount(numSamples, _maxSamples);
        if (bytes(cid).length == 0) revert EmptyCid();

        Commitment memory c = _commitments[msg.sender];
        if (c.flags & _COMMITTED == 0 || c.round != s.round) revert NoCommitment(msg.sender, s.round);
        if (c.flags & _REVEALED != 0) revert AlreadyRevealed(msg.sender, s.round);
        if (bytes24(commitmentHash(msg.sender, s.round, digest, numSamples, salt)) != c.hash) {
            revert CommitmentMismatch(msg.sender, s.round);
        }
        if (_revealedDigests[digest] != 0) revert DigestReplayed(digest);
        if (s.seed == 0) _fixSeed(s);

        _revealedDigests[digest] = 1;
        uint8 flags = c.flags | _REVEALED;
        if (_isMember(s.seed, s.commits, c.index)) flags |= _MEMBER;
        _commitments[msg.sender].flags = flags;
        s.reveals += 1;
        if (s.reveals == s.commits) s.revealEnd = uint40(block.number);
        _current = s;
        emit Revealed(s.round, msg.sender, c.index, digest, numSamples, cid);
        if (s.reveals == s.commits) emit PhaseClosedEarly(s.round, Phase.Reveal, s.commitEnd, s.revealEnd);
    }

    // --- committee -----------------------------------------------------------------------

    /// @inheritdoc ITrainingTask
    function attest(uint256 round, Result calldata result) external {
        CurrentRound memory s = _current;
        bool current = round == s.round;
        RoundRecord memory rec = current ? _asRecord(s) : _records[round];
        uint256 attestEnd = uint256(rec.revealEnd) + _attestBlocks;
        if (current) {
            // Attestations open once the reveal phase closed with enough reveals.
            if (
                finalizedRounds == _rounds || rec.reveals < _minReveals || block.number <= rec.revealEnd
                    || block.number > attestEnd
            ) revert NotInAttestPhase(round);
        } else if (round > s.round || rec.status != RoundStatus.Finalized || block.number > attestEnd) {
            // A finalized round keeps taking late votes until its deadline, so slow members that
            // back the final result are paid rather than slashed.
            revert NotInAttestPhase(round);
        }

        Commitment storage c = _commitments[msg.sender];
        if (c.flags & _COMMITTED == 0 || c.round != round || !_isMember(rec.seed, rec.commits, c.index)) {
            revert NotCommitteeMember(round, msg.sender);
        }
        Vote storage vote = _votes[round][msg.sender];
        if (vote.resultHash != 0) revert AlreadyAttested(round, msg.sender);

        uint256 fees = _committeeFee * _effectiveCommittee(rec.commits);
        if (current) {
            uint256 cap = _roundBudget - fees;
            if (result.rewardTotal > cap) revert RewardTotalTooHigh(result.rewardTotal, cap);
        }
        bytes32 resultHash = hashResult(result);
        vote.resultHash = resultHash;
        c.flags |= _ATTESTED;
        uint256 votes = ++_voteCounts[round][resultHash];
        emit Attested(round, msg.sender, resultHash, votes);

        if (current && votes == _effectiveQuorum(rec.commits)) _finalize(s, rec, result, resultHash, fees);
    }

    /// @inheritdoc ITrainingTask
    function expireRound() external {
        CurrentRound memory s = _current;
        if (!started) revert TaskNotStarted();
        if (finalizedRounds == _rounds) revert TaskCompleted();
        if (!_expirable(s)) revert RoundNotExpirable(s.round);
        RoundRecord memory rec = _asRecord(s);
        rec.status = RoundStatus.Expired;
        _records[s.round] = rec;
        emit RoundExpired(s.round);
        _startRound(s.round + 1);
    }

    // --- penalties and fees --------------------------------------------------------------

    /// @inheritdoc ITrainingTask
    function slashNonRevealer(uint256 round, address account) external nonReentrant {
        Commitment storage c = _commitments[account];
        if (c.flags & _COMMITTED == 0 || c.round != round) revert NoCommitment(account, round);
        uint8 flags = c.flags;
        if (flags & _REVEALED != 0) revert AlreadyRevealed(account, round);
        if (flags & _NONREVEAL_SLASHED != 0) revert AlreadySlashed(account, round);
        CurrentRound memory s = _current;
        if (round == s.round && block.number <= s.revealEnd) revert RevealPhaseOpen(round);
        c.flags = flags | _NONREVEAL_SLASHED;
        uint256 amount = _slash(account, _nonRevealSlash);
        emit NonRevealerSlashed(round, account, amount);
    }

    /// @inheritdoc ITrainingTask
    function settleCommitteeMember(uint256 round, address member) external nonReentrant {
        if (round >= _current.round) revert RoundNotClosed(round);
        RoundRecord storage rec = _records[round];
        bool finalized = rec.status == RoundStatus.Finalized;
        Vote storage vote = _votes[round][member];
        if (vote.settled) revert AlreadySettled(round, member);

        if (vote.resultHash != 0) {
            // Votes in an expired round backed no final result: neither paid nor slashed.
            if (!finalized) revert NothingToSettle(round, member);
            vote.settled = true;
            if (vote.resultHash == rec.resultHash) {
                feesReserved -= _committeeFee;
                feesOwed[member] += _committeeFee;
                emit CommitteeMemberSettled(round, member, Settlement.FeeCredited, _committeeFee);
            } else {
                _releaseFee(finalized);
                uint256 slashed = _slash(member, _committeeSlash);
                emit CommitteeMemberSettled(round, member, Settlement.SlashedLosingVote, slashed);
            }
            return;
        }

        // Silence is only provable while the member's commitment of that round is still stored; a
        // later commit settles it instead (see `_settleReplaced`).
        Commitment storage c = _commitments[member];
        if (c.flags & _COMMITTED == 0 || c.round != round || !_isMember(rec.seed, rec.commits, c.index)) {
            revert NotCommitteeMember(round, member);
        }
        if (c.flags & _SILENCE_SLASHED != 0) revert AlreadySettled(round, member);
        if (rec.reveals < _minReveals) revert NothingToSettle(round, member);
        uint256 attestEnd = uint256(rec.revealEnd) + _attestBlocks;
        if (block.number <= attestEnd) revert AttestPhaseOpen(round, attestEnd);
        c.flags |= _SILENCE_SLASHED;
        _releaseFee(finalized);
        uint256 amount = _slash(member, _committeeSlash);
        emit CommitteeMemberSettled(round, member, Settlement.SlashedSilent, amount);
    }

    /// @inheritdoc ITrainingTask
    function withdrawFees() external nonReentrant {
        uint256 amount = feesOwed[msg.sender];
        if (amount == 0) revert NoFees(msg.sender);
        feesOwed[msg.sender] = 0;
        emit FeesWithdrawn(msg.sender, amount);
        rewardToken.safeTransfer(msg.sender, amount);
    }

    // --- rewards -------------------------------------------------------------------------

    /// @inheritdoc ITrainingTask
    function claim(
        uint256 round,
        uint256 cumulativeAmount,
        bytes32[] calldata proof,
        uint256 previousAmount,
        bytes32[] calldata previousProof
    ) external nonReentrant {
        // Only the latest root pays: an older root (a colluding round's, say) can list anything,
        // and credits of the rounds after it would otherwise cover what it lists.
        {
            uint256 latest = rewardRound;
            if (round != latest || finalizedRounds == 0) {
                if (round < latest && _records[round].status == RoundStatus.Finalized) {
                    revert StaleRewardRoot(round, latest);
                }
                revert RoundNotFinalized(round);
            }
            bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(msg.sender, cumulativeAmount))));
            if (!MerkleProof.verifyCalldata(proof, _records[round].rewardRoot, leaf)) {
                revert InvalidProof(round, msg.sender, cumulativeAmount);
            }
        }
        uint256 already = claimed[msg.sender];
        if (cumulativeAmount <= already) revert NothingToClaim(msg.sender, cumulativeAmount, already);
        uint256 drawn = _newCredit(cumulativeAmount, already, previousAmount, previousProof);
        uint256 amount = cumulativeAmount - already;
        uint256 paid = totalClaimed + amount;
        if (paid > totalCredited) revert ClaimExceedsCredited(amount, totalCredited - totalClaimed);
        uint256 left = rewardCreditLeft;
        if (drawn > left) revert RoundCreditExceeded(round, drawn, left);

        claimed[msg.sender] = cumulativeAmount;
        totalClaimed = paid;
        emit RewardClaimed(msg.sender, round, amount, cumulativeAmount);
        if (drawn != 0) {
            left -= drawn;
            rewardCreditLeft = uint128(left); // at most the round's rewardTotal < 2^128
            emit RoundCreditDrawn(round, drawn, left);
        }
        rewardToken.safeTransfer(msg.sender, amount);
    }

    /// @notice Pays the whole uncommitted pool to `to` once every round is finalized (owner only).
    function withdrawSurplus(address to) external onlyOwner nonReentrant {
        if (finalizedRounds != _rounds) revert TaskNotCompleted();
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = pool;
        if (amount == 0) revert ZeroAmount();
        pool = 0;
        emit SurplusWithdrawn(to, amount);
        rewardToken.safeTransfer(to, amount);
    }

    // --- views ---------------------------------------------------------------------------

    /// @notice The task configuration.
    function config() external view returns (TaskConfig memory) {
        return TaskConfig({
            manifestCid: _manifestCid,
            manifestDigest: _manifestDigest,
            modelSpecDigest: _modelSpecDigest,
            aggregationRule: _aggregationRule,
            ruleParams: _ruleParams,
            committeeSize: _committeeSize,
            quorum: _quorum,
            commitBlocks: _commitBlocks,
            revealBlocks: _revealBlocks,
            attestBlocks: _attestBlocks,
            maxParticipants: _maxParticipants,
            minReveals: _minReveals,
            rounds: _rounds,
            roundBudget: _roundBudget,
            committeeFee: _committeeFee,
            nonRevealSlash: _nonRevealSlash,
            committeeSlash: _committeeSlash,
            maxSamples: _maxSamples,
            initialModelCid: _initialModelCid,
            initialModelDigest: _initialModelDigest
        });
    }

    /// @notice The current round number (rounds count up from 0; expired rounds use a number too).
    function currentRound() external view returns (uint256) {
        return _current.round;
    }

    /// @notice The phase of the current round at this block.
    function phase() public view returns (Phase) {
        CurrentRound memory s = _current;
        if (!started) return Phase.NotStarted;
        if (finalizedRounds == _rounds) return Phase.Completed;
        if (_expirable(s)) return Phase.Expirable;
        if (s.commits < _maxParticipants && block.number <= s.commitEnd) return Phase.Commit;
        if (block.number <= s.revealEnd) return Phase.Reveal;
        return Phase.Attest;
    }

    /// @notice Timing, counters and outcome of `round` (the current round reads as `Open`).
    function roundRecord(uint256 round) external view returns (RoundRecord memory) {
        CurrentRound memory s = _current;
        return round == s.round ? _asRecord(s) : _records[round];
    }

    /// @notice Last block of the attest phase of `round`.
    function attestDeadline(uint256 round) public view returns (uint256) {
        CurrentRound memory s = _current;
        uint40 revealEnd = round == s.round ? s.revealEnd : _records[round].revealEnd;
        return uint256(revealEnd) + _attestBlocks;
    }

    /// @notice The latest commitment of `account` (one slot, replaced by its next commit).
    function commitmentOf(address account) external view returns (Commitment memory) {
        return _commitments[account];
    }

    /// @notice Whether `account` sits on the committee of `round` (false once its commitment of
    /// that round was replaced, or while the seed is not fixed).
    function isCommitteeMember(uint256 round, address account) public view returns (bool) {
        Commitment memory c = _commitments[account];
        (uint96 seed, uint24 commits) = _seedOf(round);
        return c.flags & _COMMITTED != 0 && c.round == round && seed != 0 && _isMember(seed, commits, c.index);
    }

    /// @notice What a participant node needs for one step, in one call: the current round and
    /// phase, whether `account` is active, its commitment, and its committee membership, vote
    /// and attest deadline in the current and the previous round. Same values as the single
    /// views, read at one block.
    /// @param account The participant.
    function stepView(address account) external view returns (StepView memory v) {
        uint256 round = _current.round;
        (v.blockNumber, v.round, v.phase) = (block.number, round, phase());
        v.active = registry.isActive(account);
        v.commitment = _commitments[account];
        (v.member, v.vote, v.attestDeadline) =
            (isCommitteeMember(round, account), _votes[round][account], attestDeadline(round));
        if (round == 0) return v;
        v.previousStatus = _records[round - 1].status;
        (v.previousMember, v.previousVote, v.previousAttestDeadline) =
            (isCommitteeMember(round - 1, account), _votes[round - 1][account], attestDeadline(round - 1));
    }

    /// @notice {stepView} of each of `accounts`, all read at one block in one call (for a process
    /// that runs many participants' nodes), packed: the facts the accounts share (block, round,
    /// phase, deadlines, the committees) once, then four words per account. (Building and
    /// ABI-encoding a 27-word `StepView` per account cost ~1,470 EVM steps an account.)
    /// @param accounts The participants.
    /// @return shared `blockNumber`, `round`, `phase`, `attestDeadline`, `previousStatus`,
    /// `previousAttestDeadline` of {StepView}.
    /// @return packed Words `4i .. 4i+3` for `accounts[i]`: its commitment (`hash` in the low 24
    /// bytes, then `round` from bit 192, `index` from bit 224, `flags` from bit 248); a bit set
    /// (1 `active`, 2 `member`, 4 `vote.settled`, 8 `previousMember`, 16 `previousVote.settled`);
    /// `vote.resultHash`; `previousVote.resultHash`.
    function stepViews(address[] calldata accounts)
        external
        view
        returns (uint256[6] memory shared, uint256[] memory packed)
    {
        uint256 round = _current.round;
        uint256 previous = round > 0 ? round - 1 : 0; // round 0 has none: its fields stay unset
        shared = [block.number, round, uint256(phase()), attestDeadline(round), 0, 0];
        if (round > 0) (shared[4], shared[5]) = (uint256(_records[previous].status), attestDeadline(previous));
        (uint256[] memory members, uint256[] memory previousMembers) =
            (committeeIndices(round), committeeIndices(previous));
        packed = new uint256[](4 * accounts.length);
        uint256[] memory active = registry.activeBits(accounts);
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            Commitment memory c = _commitments[account];
            uint256 bits = ((active[i >> 8] >> (i & 255)) & 1) | (_inCommittee(c, round, members) ? 2 : 0);
            packed[4 * i] = uint256(uint192(c.hash)) | (uint256(c.round) << 192) | (uint256(c.index) << 224)
                | (uint256(c.flags) << 248);
            // A vote is read only where one can exist (two cold storage words each; most
            // accounts are on no committee): `attest` sets the voter's `_ATTESTED` flag on its
            // commitment of the round voted on, which stays until its next commit.
            if (c.round == round && c.flags & _ATTESTED != 0) {
                Vote memory vote = _votes[round][account];
                bits |= vote.settled ? 4 : 0;
                packed[4 * i + 2] = uint256(vote.resultHash);
            }
            if (round > 0) {
                bits |= _inCommittee(c, previous, previousMembers) ? 8 : 0;
                // after this round's commit the flag of the previous round is gone: read then
                bool mayHaveVoted = c.round == previous ? c.flags & _ATTESTED != 0 : c.round == round;
                if (mayHaveVoted) {
                    Vote memory last = _votes[previous][account];
                    bits |= last.settled ? 16 : 0;
                    packed[4 * i + 3] = uint256(last.resultHash);
                }
            }
            packed[4 * i + 1] = bits;
        }
    }

    /// @notice The commit indices on the committee of `round`, in permuted order (empty until the
    /// seed is fixed). Members are `min(committeeSize, commits)` distinct indices.
    function committeeIndices(uint256 round) public view returns (uint256[] memory indices) {
        (uint96 seed, uint24 commits) = _seedOf(round);
        if (seed == 0) return indices;
        indices = new uint256[](_effectiveCommittee(commits));
        for (uint256 i = 0; i < indices.length; ++i) {
            indices[i] = CommitteeSampler.indexAt(seed, commits, i);
        }
    }

    /// @notice Attestations needed to finalize a round with `commits` commits: all committers form
    /// the committee when fewer than `committeeSize` committed, and the quorum shrinks with it to
    /// `ceil(quorum * members / committeeSize)`, still a strict majority.
    function effectiveQuorum(uint256 commits) external view returns (uint256) {
        return _effectiveQuorum(commits);
    }

    /// @notice The attestation of `member` in `round`.
    function voteOf(uint256 round, address member) external view returns (Vote memory) {
        return _votes[round][member];
    }

    /// @notice Votes for `resultHash` in `round`.
    function voteCount(uint256 round, bytes32 resultHash) external view returns (uint256) {
        return _voteCounts[round][resultHash];
    }

    /// @notice Whether `digest` was revealed anywhere in this task.
    function isDigestRevealed(bytes32 digest) external view returns (bool) {
        return _revealedDigests[digest] != 0;
    }

    /// @notice The commitment `account` must submit in `round` for an update.
    function commitmentHash(address account, uint256 round, bytes32 digest, uint256 numSamples, bytes32 salt)
        public
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(block.chainid, address(this), account, round, digest, numSamples, salt));
    }

    /// @notice The vote key of a result: `keccak256(abi.encode(result))`.
    function hashResult(Result calldata result) public pure returns (bytes32) {
        return keccak256(abi.encode(result));
    }

    // --- internals -----------------------------------------------------------------------

    function _startRound(uint256 round) private {
        if (finalizedRounds == _rounds) {
            _current = CurrentRound(uint32(round), 0, 0, 0, 0, 0);
            emit TaskFinished(_rounds);
            return;
        }
        uint40 commitEnd = uint40(block.number + _commitBlocks);
        uint40 revealEnd = commitEnd + _revealBlocks;
        _current = CurrentRound(uint32(round), commitEnd, revealEnd, 0, 0, 0);
        emit RoundStarted(round, commitEnd, revealEnd);
    }

    /// @dev Derives the seed from the hash of the commit phase's last block, which nobody knew
    /// while committing. Reverts once that hash is out of the 256-block window.
    function _fixSeed(CurrentRound memory s) private {
        bytes32 bh = blockhash(s.commitEnd);
        if (bh == 0) revert SeedUnavailable(s.round);
        // The low bit is forced so that 0 can mean "not fixed yet".
        s.seed = uint96(uint256(keccak256(abi.encode(bh, address(this), s.round)))) | 1;
        emit CommitteeSeedFixed(s.round, s.seed, s.commits);
    }

    function _finalize(
        CurrentRound memory s,
        RoundRecord memory rec,
        Result calldata result,
        bytes32 resultHash,
        uint256 fees
    ) private {
        uint256 needed = result.rewardTotal + fees;
        if (needed > pool) revert InsufficientPool(needed, pool);
        pool -= needed;
        feesReserved += fees;
        totalCredited += result.rewardTotal;
        // The new root's claims may draw its own credit above the baselines its predecessor proves.
        (finalizedRounds, previousRewardRound, rewardRound, rewardCreditLeft) =
            (finalizedRounds + 1, rewardRound, s.round, uint128(result.rewardTotal));
        (rec.status, rec.resultHash, rec.modelDigest) = (RoundStatus.Finalized, resultHash, result.modelDigest);
        (rec.reportDigest, rec.rewardRoot, rec.rewardTotal) =
            (result.reportDigest, result.rewardRoot, result.rewardTotal);
        _records[s.round] = rec;
        modelDigest = result.modelDigest;
        modelCid = result.modelCid;
        emit RoundFinalized(
            s.round,
            resultHash,
            result.modelDigest,
            result.modelCid,
            result.reportDigest,
            result.reportCid,
            result.rewardRoot,
            result.rewardTotal
        );
        _startRound(s.round + 1);
    }

    /// @dev The part of the caller's `cumulativeAmount` under the latest root that is credit of
    /// that round: what lies above its baseline, the larger of what it was paid (`already`) and
    /// what the previous root credits it (`previousAmount`, proven when above `already`). The
    /// latest root alone could otherwise pay one account the unclaimed credits of earlier rounds.
    function _newCredit(
        uint256 cumulativeAmount,
        uint256 already,
        uint256 previousAmount,
        bytes32[] calldata previousProof
    ) private view returns (uint256) {
        uint256 baseline = already;
        if (previousAmount > already) {
            if (finalizedRounds < 2) revert NoPreviousRewardRound(rewardRound);
            uint256 previous = previousRewardRound;
            bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(msg.sender, previousAmount))));
            if (!MerkleProof.verifyCalldata(previousProof, _records[previous].rewardRoot, leaf)) {
                revert InvalidProof(previous, msg.sender, previousAmount);
            }
            baseline = previousAmount;
        }
        return cumulativeAmount > baseline ? cumulativeAmount - baseline : 0;
    }

    /// @dev Settles what a replaced commitment of an earlier round still owes: a missing reveal,
    /// and committee silence (recorded for members that revealed; see the `_MEMBER` flag). A
    /// silent member that never revealed pays the non-reveal penalty only, and the fee its
    /// finalized round reserved for it returns to the pool: once its commitment is replaced,
    /// nothing else can settle that member, so the fee would stay reserved for good.
    function _settleReplaced(address account, Commitment memory old) private {
        bool revealed = old.flags & _REVEALED != 0;
        if (!revealed && old.flags & _NONREVEAL_SLASHED == 0) {
            uint256 amount = _slash(account, _nonRevealSlash);
            emit NonRevealerSlashed(old.round, account, amount);
        }
        if (old.flags & (_ATTESTED | _SILENCE_SLASHED) != 0) return;
        if (!revealed) {
            RoundRecord storage closed = _records[old.round];
            if (closed.status == RoundStatus.Finalized && _isMember(closed.seed, closed.commits, old.index)) {
                _releaseFee(true);
            }
            return;
        }
        if (old.flags & _MEMBER == 0) return;
        RoundRecord storage rec = _records[old.round];
        if (rec.reveals < _minReveals) return;
        uint256 attestEnd = uint256(rec.revealEnd) + _attestBlocks;
        if (block.number <= attestEnd) revert CommitteeDutyPending(account, old.round, attestEnd);
        _releaseFee(rec.status == RoundStatus.Finalized);
        uint256 slashed = _slash(account, _committeeSlash);
        emit CommitteeMemberSettled(old.round, account, Settlement.SlashedSilent, slashed);
    }

    /// @dev Takes up to `amount` of stake into the pool; returns what was taken.
    function _slash(address account, uint256 amount) private returns (uint256 slashed) {
        if (amount == 0) return 0;
        slashed = registry.slash(account, amount);
        pool += slashed;
    }

    /// @dev Returns a member's reserved fee to the pool when it will not be paid.
    function _releaseFee(bool finalized) private {
        if (!finalized) return;
        feesReserved -= _committeeFee;
        pool += _committeeFee;
    }

    function _expirable(CurrentRound memory s) private view returns (bool) {
        uint256 bn = block.number;
        bool commitsClosed = s.commits == _maxParticipants || bn > s.commitEnd;
        if (!commitsClosed) return false;
        if (s.commits == 0) return true;
        if (s.seed == 0 && bn > uint256(s.commitEnd) + 256) return true;
        if (bn > s.revealEnd && s.reveals < _minReveals) return true;
        return bn > uint256(s.revealEnd) + _attestBlocks;
    }

    function _asRecord(CurrentRound memory s) private pure returns (RoundRecord memory rec) {
        (rec.commitEnd, rec.revealEnd, rec.commits, rec.reveals, rec.seed) =
            (s.commitEnd, s.revealEnd, s.commits, s.reveals, s.seed);
    }

    function _seedOf(uint256 round) private view returns (uint96 seed, uint24 commits) {
        CurrentRound memory s = _current;
        if (round == s.round) return (s.seed, s.commits);
        RoundRecord storage rec = _records[round];
        return (rec.seed, rec.commits);
    }

    function _isMember(uint96 seed, uint256 commits, uint256 index) private view returns (bool) {
        if (commits <= _committeeSize) return true;
        return CommitteeSampler.position(seed, commits, index) < _committeeSize;
    }

    /// @dev {isCommitteeMember} for commitment `c` given the committee's `indices` of `round`.
    function _inCommittee(Commitment memory c, uint256 round, uint256[] memory indices) private pure returns (bool) {
        if (c.flags & _COMMITTED == 0 || c.round != round) return false;
        for (uint256 i = 0; i < indices.length; ++i) {
            if (indices[i] == c.index) return true;
        }
        return false;
    }

    function _effectiveCommittee(uint256 commits) private view returns (uint256) {
        return commits < _committeeSize ? commits : _committeeSize;
    }

    function _effectiveQuorum(uint256 commits) private view returns (uint256) {
        uint256 k = _effectiveCommittee(commits);
        return (uint256(_quorum) * k + _committeeSize - 1) / _committeeSize;
    }
}
