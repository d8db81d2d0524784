// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IParticipantRegistry} from "./interfaces/IParticipantRegistry.sol";

/// @title ParticipantRegistry
/// @notice Participants bond an ERC-20 stake here once and then take part in any training task
/// that trusts this registry. Tasks granted `SLASHER_ROLE` can take stake for provable
/// misbehaviour; the slashed tokens go to the task's reward pool.
/// @dev The settings are immutable, which keeps `isActive` (called by every commit) at one storage
/// read; `unbondingBlocks` in particular must not shrink, because tasks check at deployment that
/// it outlasts a round plus an attest phase, so a stake stays bonded for an attest phase after
/// every slash against it became provable.
contract ParticipantRegistry is IParticipantRegistry, AccessControl, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice Role that admits accounts through the allow-list gate.
    bytes32 public constant VERIFIER_ROLE = keccak256("VERIFIER_ROLE");
    /// @notice Role of task contracts allowed to slash stakes.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @inheritdoc IParticipantRegistry
    IERC20 public immutable stakeToken;
    /// @inheritdoc IParticipantRegistry
    uint64 public immutable unbondingBlocks;
    /// @inheritdoc IParticipantRegistry
    uint256 public immutable minStake;
    /// @inheritdoc IParticipantRegistry
    bool public immutable allowlistEnabled;

    mapping(address account => Participant) private _participants;

    /// @param token_ The ERC-20 token participants stake.
    /// @param minStake_ Minimum stake to register and to stay active.
    /// @param unbondingBlocks_ Blocks between `requestWithdrawal` and `withdraw`.
    /// @param allowlistEnabled_ Whether the allow-list gate starts switched on.
    /// @param admin Receives `DEFAULT_ADMIN_ROLE` and `VERIFIER_ROLE`.
    constructor(IERC20 token_, uint256 minStake_, uint64 unbondingBlocks_, bool allowlistEnabled_, address admin) {
        if (address(token_) == address(0) || admin == address(0)) revert ZeroAddress();
        stakeToken = token_;
        minStake = minStake_;
        unbondingBlocks = unbondingBlocks_;
        allowlistEnabled = allowlistEnabled_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(VERIFIER_ROLE, admin);
    }

    // --- views ---------------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function isActive(address account) external view returns (bool) {
        return _isActive(_participants[account]);
    }

    /// @inheritdoc IParticipantRegistry
    function activeBits(address[] calldata accounts) external view returns (uint256[] memory bits) {
        bits = new uint256[]((accounts.length + 255) / 256);
        for (uint256 i = 0; i < accounts.length; ++i) {
            if (_isActive(_participants[accounts[i]])) {
                bits[i >> 8] |= 1 << (i & 255);
            }
        }
    }

    /// @inheritdoc IParticipantRegistry
    function stakeOf(address account) external view returns (uint256) {
        return _participants[account].stake;
    }

    /// @inheritdoc IParticipantRegistry
    function participant(address account) external view returns (Participant memory) {
        return _participants[account];
    }

    // --- participants --------------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function register(uint256 amount) external nonReentrant {
        Participant storage p = _participants[msg.sender];
        if (p.registered) revert AlreadyRegistered(msg.sender);
        if (allowlistEnabled && !p.allowed) revert NotAllowed(msg.sender);
        if (amount < minStake || amount == 0) revert StakeBelowMinimum(amount, minStake);
        p.registered = true;
        p.stake = SafeCast.toUint128(amount);
        emit Registered(msg.sender, amount);
        stakeToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IParticipantRegistry
    function addStake(uint256 amount) external nonReentrant {
        Participant storage p = _participants[msg.sender];
        if (!p.registered) revert NotRegistered(msg.sender);
        if (p.unlockBlock != 0) revert AlreadyExiting(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint128 stake = p.stake + SafeCast.toUint128(amount);
        p.stake = stake;
        emit StakeAdded(msg.sender, amount, stake);
        stakeToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IParticipantRegistry
    function requestWithdrawal() external {
        Participant storage p = _participants[msg.sender];
        if (!p.registered) revert NotRegistered(msg.sender);
        if (p.unlockBlock != 0) revert AlreadyExiting(msg.sender);
        uint64 unlockBlock = uint64(block.number) + unbondingBlocks;
        p.unlockBlock = unlockBlock;
        emit WithdrawalRequested(msg.sender, unlockBlock);
    }

    /// @inheritdoc IParticipantRegistry
    function withdraw() external nonReentrant {
        Participant storage p = _participants[msg.sender];
        if (!p.registered) revert NotRegistered(msg.sender);
        uint64 unlockBlock = p.unlockBlock;
        if (unlockBlock == 0) revert NotExiting(msg.sender);
        if (block.number < unlockBlock) revert StillBonded(msg.sender, unlockBlock);
        uint256 amount = p.stake;
        // Keep the verifier's admission: re-registering later should not need a new check.
        (p.stake, p.unlockBlock, p.registered) = (0, 0, false);
        emit Withdrawn(msg.sender, amount);
        if (amount > 0) stakeToken.safeTransfer(msg.sender, amount);
    }

    // --- tasks and verifiers -------------------------------------------------------------

    /// @inheritdoc IParticipantRegistry
    function slash(address account, uint256 amount)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
        returns (uint256 slashed)
    {
        Participant storage p = _participants[account];
        uint128 stake = p.stake;
        slashed = amount < stake ? amount : stake;
        p.stake = stake - uint128(slashed);
        emit Slashed(account, msg.sender, amount, slashed);
        if (slashed > 0) stakeToken.safeTransfer(msg.sender, slashed);
    }

    /// @inheritdoc IParticipantRegistry
    function setAllowed(address account, bool allowed) external onlyRole(VERIFIER_ROLE) {
        if (account == address(0)) revert ZeroAddress();
        _participants[account].allowed = allowed;
        emit AllowedSet(account, allowed);
    }

    // --- internal ------------------------------------------------------------------------

    /// @dev The one definition of "active" that `isActive` and `activeBits` share: registered,
    /// not leaving, staked at least `minStake`, and allowed while the allowlist is on. The
    /// struct is one slot: a copy in memory reads it once (a storage pointer once a field).
    function _isActive(Participant memory p) private view returns (bool) {
        return p.registered && p.unlockBlock == 0 && p.stake >= minStake && (p.allowed || !allowlistEnabled);
    }
}
