// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title ITrainingTask
/// @notice One federated-learning task: rounds of commit, reveal, committee attestation and
/// finalization, with pull-based rewards and stake slashing through the participant registry.
/// @dev Holds the structs, errors and events so off-chain code can decode them from one ABI.
interface ITrainingTask {
    // --- types ---------------------------------------------------------------------------

    /// @notice Task configuration, fixed at deployment.
    /// @param manifestCid CID of the task manifest (model architecture, hyper-parameters, codec, rule).
    /// @param manifestDigest Digest of the manifest bytes.
    /// @param modelSpecDigest Digest of the model spec every update must match.
    /// @param aggregationRule Id of the robust aggregation rule (meaning defined off-chain).
    /// @param ruleParams Parameters of the rule (meaning defined off-chain).
    /// @param committeeSize Committee members per round (1..32).
    /// @param quorum Matching attestations that finalize a round (> committeeSize / 2).
    /// @param commitBlocks Length of the commit phase in blocks.
    /// @param revealBlocks Length of the reveal phase in blocks.
    /// @param attestBlocks Length of the attest phase in blocks.
    /// @param maxParticipants Commits per round; the commit phase closes early when reached.
    /// @param minReveals Reveals a round needs to be attested; fewer and it can only expire.
    /// @param rounds Rounds to finalize; the task completes after that many.
    /// @param roundBudget Reward tokens one round may spend, committee fees included.
    /// @param committeeFee Fee per committee member that backed the final result.
    /// @param nonRevealSlash Stake taken from a participant that committed but did not reveal.
    /// @param committeeSlash Stake taken from a member that backed a losing result or stayed silent.
    /// @param maxSamples Upper bound on the self-reported sample count of an update.
    /// @param initialModelCid CID of the initial global model.
    /// @param initialModelDigest Digest of the initial global model.
    struct TaskConfig {
        string manifestCid;
        bytes32 manifestDigest;
        bytes32 modelSpecDigest;
        uint8 aggregationRule;
        bytes32 ruleParams;
        uint8 committeeSize;
        uint8 quorum;
        uint32 commitBlocks;
        uint32 revealBlocks;
        uint32 attestBlocks;
        uint32 maxParticipants;
        uint32 minReveals;
        uint32 rounds;
        uint256 roundBudget;
        uint256 committeeFee;
        uint256 nonRevealSlash;
        uint256 committeeSlash;
        uint64 maxSamples;
        string initialModelCid;
        bytes32 initialModelDigest;
    }

    /// @notice A round result as the committee recomputes and attests it.
    /// @dev Votes are counted per `keccak256(abi.encode(result))` (see {hashResult}).
    /// @param rewardRoot Cumulative reward Merkle root: OpenZeppelin StandardMerkleTree over
    /// `(address account, uint256 cumulativeAmount)` of everything credited up to this round.
    /// @param rewardTotal Rewards newly credited by this round.
    struct Result {
        bytes32 modelDigest;
        string modelCid;
        bytes32 reportDigest;
        string reportCid;
        bytes32 rewardRoot;
        uint256 rewardTotal;
    }

    /// @notice Lifecycle state of a round.
    enum RoundStatus {
        Open,
        Finalized,
        Expired
    }

    /// @notice Phase of the current round (`NotStarted` until the owner calls {start}).
    enum Phase {
        Commit,
        Reveal,
        Attest,
        Expirable,
        Completed,
        NotStarted
    }

    /// @notice How a committee member was settled.
    enum Settlement {
        FeeCredited,
        SlashedLosingVote,
        SlashedSilent
    }

    /// @notice Timing, counters and outcome of a round.
    /// @param commitEnd Last block of the commit phase (moved earlier when `maxParticipants` commit).
    /// @param revealEnd Last block of the reveal phase (moved earlier when everyone revealed).
    /// @param commits Number of commits (commit indices run 0..commits-1).
    /// @param reveals Number of reveals.
    /// @param seed Committee seed; 0 until fixed after the commit phase.
    /// @param status Open, Finalized or Expired.
    struct RoundRecord {
        uint40 commitEnd;
        uint40 revealEnd;
        uint24 commits;
        uint24 reveals;
        uint96 seed;
        RoundStatus status;
        bytes32 resultHash;
        bytes32 modelDigest;
        bytes32 reportDigest;
        bytes32 rewardRoot;
        uint256 rewardTotal;
    }

    /// @notice A participant's latest commitment, kept in one slot reused across rounds.
    /// @param hash The first 24 bytes of the commitment (any value, zero included).
    /// @param round Round of the commitment.
    /// @param index Commit index within that round.
    /// @param flags Bit set: 1 revealed, 2 committee member (set at reveal), 4 attested,
    /// 8 slashed for not revealing, 16 slashed for committee silence, 32 committed (set by every
    /// commit: the slot holds a commitment; never inferred from the hash).
    struct Commitment {
        bytes24 hash;
        uint32 round;
        uint24 index;
        uint8 flags;
    }

    /// @notice A committee member's attestation in a round.
    struct Vote {
        bytes32 resultHash;
        bool settled;
    }

    /// @notice Everything a participant node decides one step on, read in one call (see
    /// `TrainingTask.stepView`): the current round and phase, the caller's commitment, and its
    /// committee duty in the current round and in the previous one (a late vote).
    /// @param blockNumber Block the view was read at (phase and deadlines are relative to it).
    /// @param round The current round.
    /// @param phase The current round's phase at `blockNumber`.
    /// @param active Whether the account is an active participant of the registry.
    /// @param commitment The account's latest commitment (of any round).
    /// @param member Whether the account sits on the committee of `round`.
    /// @param vote The account's vote in `round`.
    /// @param attestDeadline Last block of the attest phase of `round`.
    /// @param previousStatus Status of `round - 1` (`Open` when `round` is 0).
    /// @param previousMember Whether the account sits on the committee of `round - 1`.
    /// @param previousVote The account's vote in `round - 1`.
    /// @param previousAttestDeadline Last block of the attest phase of `round - 1` (0 when `round` is 0).
    struct StepView {
        uint256 blockNumber;
        uint256 round;
        Phase phase;
        bool active;
        Commitment commitment;
        bool member;
        Vote vote;
        uint256 attestDeadline;
        RoundStatus previousStatus;
        bool previousMember;
        Vote previousVote;
        uint256 previousAttestDeadline;
    }

    // --- configuration errors ------------------------------------------------------------

    /// @notice A zero address was given for the registry, the reward token or the owner.
    error ZeroAddress();
    /// @notice The committee must have 1..32 members and `committeeSize / 2 < quorum <= committeeSize`.
    error InvalidCommittee(uint8 committeeSize, uint8 quorum);
    /// @notice Every phase must last at least one block.
    error InvalidPhaseLengths(uint32 commitBlocks, uint32 revealBlocks, uint32 attestBlocks);
    /// @notice The registry's unbonding delay must outlast a round plus one block plus one attest
    /// phase (`required`), so a stake stays bonded for an attest phase after every slash against
    /// it became provable.
    error UnbondingTooShort(uint64 unbondingBlocks, uint256 required);
    /// @notice Need `0 < minReveals <= maxParticipants < 2^24`.
    error InvalidParticipantLimits(uint32 maxParticipants, uint32 minReveals);
    /// @notice `rounds` and `maxSamples` must be positive.
    error InvalidRoundsOrSamples(uint32 rounds, uint64 maxSamples);
    /// @notice `committeeFee * committeeSize` must fit in the round budget.
    error CommitteeFeesExceedBudget(uint256 fees, uint256 roundBudget);
    /// @notice The round budget must fit in 128 bits (a round's claimable credit is kept in them).
    error RoundBudgetTooLarge(uint256 roundBudget);

    // --- round errors --------------------------------------------------------------------

    /// @notice A zero amount was given where tokens must move.
    error ZeroAmount();
    /// @notice The owner has not started the task yet.
    error TaskNotStarted();
    /// @notice The task was already started.
    error TaskAlreadyStarted();
    /// @notice Every round of the task is finalized.
    error TaskCompleted();
    /// @notice The commit phase of `round` is over (deadline passed or `maxParticipants` reached).
    error CommitPhaseClosed(uint256 round);
    /// @notice The commit phase of `round` is still running.
    error CommitPhaseOpen(uint256 round);
    /// @notice The reveal phase of `round` is over.
    error RevealPhaseClosed(uint256 round);
    /// @notice The reveal phase of `round` is still running.
    error RevealPhaseOpen(uint256 round);
    /// @notice `account` is not an active participant of the registry.
    error NotActiveParticipant(address account);
    /// @notice `account` already committed in `round`.
    error AlreadyCommitted(address account, uint256 round);
    /// @notice `account` sits on the committee of `round` and must attest (until `attestEnd`)
    /// before committing again.
    error CommitteeDutyPending(address account, uint256 round, uint256 attestEnd);
    /// @notice `account` has no commitment in `round` (or it was replaced by a later one).
    error NoCommitment(address account, uint256 round);
    /// @notice `account` already revealed in `round`.
    error AlreadyRevealed(address account, uint256 round);
    /// @notice The revealed values do not hash to the commitment of `account` in `round`.
    error CommitmentMismatch(address account, uint256 round);
    /// @notice The sample count must be in `1..maxSamples`.
    error InvalidSampleCount(uint256 numSamples, uint256 maxSamples);
    /// @notice The update CID must not be empty.
    error EmptyCid();
    /// @notice `digest` was already revealed earlier in this task (a replayed update).
    error DigestReplayed(bytes32 digest);
    /// @notice The committee seed of `round` is already fixed.
    error SeedAlreadyFixed(uint256 round);
    /// @notice The block hash the seed of `round` derives from is gone (> 256 blocks); the round
    /// can only expire.
    error SeedUnavailable(uint256 round);
    /// @notice `round` does not accept attestations now.
    error NotInAttestPhase(uint256 round);
    /// @notice `account` is not on the committee of `round`.
    error NotCommitteeMember(uint256 round, address account);
    /// @notice `member` already attested in `round`.
    error AlreadyAttested(uint256 round, address member);
    /// @notice The attested `rewardTotal` exceeds what the round may credit (`cap`).
    error RewardTotalTooHigh(uint256 rewardTotal, uint256 cap);
    /// @notice The reward pool holds `available` but the round needs `needed` (fund the task).
    error InsufficientPool(uint256 needed, uint256 available);
    /// @notice The current `round` can still progress, so it cannot be expired.
    error RoundNotExpirable(uint256 round);
    /// @notice `round` is not finalized or expired yet.
    error RoundNotClosed(uint256 round);
    /// @notice `round` is not finalized.
    error RoundNotFinalized(uint256 round);
    /// @notice The attest phase of `round` runs until block `attestEnd`.
    error AttestPhaseOpen(uint256 round, uint256 attestEnd);
    /// @notice `member` was already settled for `round`.
    error AlreadySettled(uint256 round, address member);
    /// @notice `member` owes nothing and earned nothing in `round` (no attest phase, or expired).
    error NothingToSettle(uint256 round, address member);
    /// @notice `account` was already slashed for not revealing in `round`.
    error AlreadySlashed(address account, uint256 round);
    /// @notice `round` is finalized but `latest` finalized after it: claims use the latest root.
    error StaleRewardRoot(uint256 round, uint256 latest);
    /// @notice The proof does not place `(account, cumulativeAmount)` under the root of `round`.
    error InvalidProof(uint256 round, address account, uint256 cumulativeAmount);
    /// @notice `account` already claimed `claimed`, at least `cumulativeAmount`.
    error NothingToClaim(address account, uint256 cumulativeAmount, uint256 claimed);
    /// @notice Paying `amount` would exceed the credited-but-unclaimed total `available`.
    error ClaimExceedsCredited(uint256 amount, uint256 available);
    /// @notice The claim draws `amount` above its baseline from the credit of `round`, of which
    /// claims can still draw `available` (prove the previous root's credit as the baseline).
    error RoundCreditExceeded(uint256 round, uint256 amount, uint256 available);
    /// @notice A baseline above what the caller claimed was given, but `round` is the first
    /// finalized round: there is no previous root to prove it against.
    error NoPreviousRewardRound(uint256 round);
    /// @notice `account` has no committee fees to withdraw.
    error NoFees(address account);
    /// @notice The task still has rounds to run.
    error TaskNotCompleted();

    // --- events --------------------------------------------------------------------------

    /// @notice `funder` added `amount` tokens; the uncommitted reward pool is now `pool`.
    event Funded(address indexed funder, uint256 amount, uint256 pool);
    /// @notice `round` opened; commits are accepted until block `commitEnd`.
    event RoundStarted(uint256 indexed round, uint256 commitEnd, uint256 revealEnd);
    /// @notice `account` committed in `round` with commit index `index`.
    event Committed(uint256 indexed round, address indexed account, uint256 index, bytes32 commitment);
    /// @notice A phase of `round` closed before its configured end: the commit phase when the
    /// round's participant slots filled, the reveal phase when every committer revealed. The
    /// phase now ending is `phase`; the round's deadlines are now `commitEnd` and `revealEnd`.
    event PhaseClosedEarly(uint256 indexed round, Phase phase, uint256 commitEnd, uint256 revealEnd);
    /// @notice The commit phase of `round` closed with `commits` commits; the committee seed is fixed.
    event CommitteeSeedFixed(uint256 indexed round, uint256 seed, uint256 commits);
    /// @notice `account` revealed its update for `round`.
    event Revealed(
        uint256 indexed round, address indexed account, uint256 index, bytes32 digest, uint256 numSamples, string cid
    );
    /// @notice `member` attested `resultHash` in `round`, which now has `votes` votes.
    event Attested(uint256 indexed round, address indexed member, bytes32 indexed resultHash, uint256 votes);
    /// @notice `round` reached quorum on `resultHash`; the global model and reward root moved on.
    event RoundFinalized(
        uint256 indexed round,
        bytes32 indexed resultHash,
        bytes32 modelDigest,
        string modelCid,
        bytes32 reportDigest,
        string reportCid,
        bytes32 rewardRoot,
        uint256 rewardTotal
    );
    /// @notice `round` expired: nothing credited, the global model stays, the budget rolls over.
    event RoundExpired(uint256 indexed round);
    /// @notice The last of `rounds` rounds was finalized.
    event TaskFinished(uint256 rounds);
    /// @notice `account` was slashed `amount` for committing without revealing in `round`.
    event NonRevealerSlashed(uint256 indexed round, address indexed account, uint256 amount);
    /// @notice `member` of the committee of `round` was settled: fee credited or stake slashed.
    event CommitteeMemberSettled(
        uint256 indexed round, address indexed member, Settlement outcome, uint256 amount
    );
    /// @notice `member` withdrew `amount` of committee fees.
    event FeesWithdrawn(address indexed member, uint256 amount);
    /// @notice `account` claimed `amount` against the root of `round`; its total is `cumulativeAmount`.
    event RewardClaimed(address indexed account, uint256 indexed round, uint256 amount, uint256 cumulativeAmount);
    /// @notice A claim drew `amount` of the credit of `round` (above the claimant's baseline);
    /// claims can still draw `left` of it.
    event RoundCreditDrawn(uint256 indexed round, uint256 amount, uint256 left);
    /// @notice The owner withdrew `amount` of unused pool after the task completed.
    event SurplusWithdrawn(address indexed to, uint256 amount);

    // --- participants --------------------------------------------------------------------

    /// @notice Opens round 0 in this block (owner only, once). Deploy, fund and let participants
    /// register first: the commit phase runs from here, so no round is spent on deployment.
    function start() external;

    /// @notice Adds `amount` reward tokens to the pool (anyone; approve first).
    function fund(uint256 amount) external;

    /// @notice Commits to an update in the current round.
    /// @dev `commitment = keccak256(abi.encode(block.chainid, address(this), msg.sender, round,
    /// digest, numSamples, salt))` with types (uint256, address, address, uint256, bytes32, uint256,
    /// bytes32). A stale commitment of an earlier round is settled first: its owner is slashed
    /// `nonRevealSlash` if it never revealed, and `committeeSlash` if it sat silent on a committee.
    function commit(bytes32 commitment) external;

    /// @notice Fixes the committee seed once the commit phase is over (anyone; reveals do it too).
    function closeCommitPhase() external;

    /// @notice Reveals the update committed in the current round.
    function reveal(bytes32 digest, uint256 numSamples, bytes32 salt, string calldata cid) external;

    /// @notice Attests the result of `round` (committee members only, once each).
    function attest(uint256 round, Result calldata result) external;

    /// @notice Expires the current round if it cannot finalize any more.
    function expireRound() external;

    /// @notice Slashes `account` for committing without revealing in `round` (anyone).
    function slashNonRevealer(uint256 round, address account) external;

    /// @notice Settles a committee member of a closed `round`: fee or slash (anyone).
    function settleCommitteeMember(uint256 round, address member) external;

    /// @notice Pays the caller's credited committee fees.
    function withdrawFees() external;

    /// @notice Pays the caller `cumulativeAmount` minus what it already claimed, proven against the
    /// reward root of `round`, which must be the latest finalized round (see `rewardRound`): a
    /// payment is always backed by the newest cumulative root, and the total paid never exceeds
    /// the total credited.
    /// @dev The caller's baseline is the larger of what it claimed and `previousAmount`, which
    /// must then be proven by `previousProof` against the root of `previousRewardRound` (the
    /// finalized round before `round`). `cumulativeAmount` above the baseline is credit of `round`
    /// and all claims together may draw at most its `rewardTotal` (`RoundCreditExceeded`), so a
    /// colluding round cannot pay one account the unclaimed credits of earlier rounds. A caller
    /// that claimed the previous root's credit passes `previousAmount` 0 and an empty proof.
    /// @param round The latest finalized round.
    /// @param cumulativeAmount The caller's cumulative credit under the root of `round`.
    /// @param proof Merkle proof of `(caller, cumulativeAmount)` under that root.
    /// @param previousAmount The caller's cumulative credit under the previous finalized root
    /// (0, or at most what it claimed, to prove nothing).
    /// @param previousProof Merkle proof of `(caller, previousAmount)` under the previous root.
    function claim(
        uint256 round,
        uint256 cumulativeAmount,
        bytes32[] calldata proof,
        uint256 previousAmount,
        bytes32[] calldata previousProof
    ) external;
}
