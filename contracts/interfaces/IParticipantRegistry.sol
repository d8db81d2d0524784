// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IParticipantRegistry
/// @notice Stake-backed registry of FLChain participants, shared by every training task.
/// @dev Holds the errors, events and structs so off-chain code can decode them from one ABI.
interface IParticipantRegistry {
    /// @notice A participant's registration, packed into one storage slot.
    /// @param stake Tokens currently bonded.
    /// @param unlockBlock Block from which `withdraw` pays out; 0 while not exiting.
    /// @param registered Whether the account is registered (stake may still be bonded while exiting).
    /// @param allowed Whether the verifier admitted the account (only checked if the allow-list is on).
    struct Participant {
        uint128 stake;
        uint64 unlockBlock;
        bool registered;
        bool allowed;
    }

    /// @notice `account` is already registered.
    error AlreadyRegistered(address account);
    /// @notice `account` is not registered.
    error NotRegistered(address account);
    /// @notice The allow-list gate is on and `account` has not been admitted by a verifier.
    error NotAllowed(address account);
    /// @notice `amount` is below the registry's `minimum` stake.
    error StakeBelowMinimum(uint256 amount, uint256 minimum);
    /// @notice A zero amount was given where tokens must move.
    error ZeroAmount();
    /// @notice `account` already requested its withdrawal and is leaving.
    error AlreadyExiting(address account);
    /// @notice `account` has not requested a withdrawal.
    error NotExiting(address account);
    /// @notice The stake of `account` stays bonded until block `unlockBlock`.
    error StillBonded(address account, uint64 unlockBlock);
    /// @notice A zero address was given for a required contract or account.
    error ZeroAddress();

    /// @notice `account` registered with `stake` tokens.
    event Registered(address indexed account, uint256 stake);
    /// @notice `account` added `amount` tokens; its stake is now `stake`.
    event StakeAdded(address indexed account, uint256 amount, uint256 stake);
    /// @notice `account` left the active set; its stake unlocks at block `unlockBlock`.
    event WithdrawalRequested(address indexed account, uint64 unlockBlock);
    /// @notice `account` withdrew its remaining `amount` tokens and is no longer registered.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice `slasher` took `amount` tokens (of `requested`) from the stake of `account`.
    event Slashed(address indexed account, address indexed slasher, uint256 requested, uint256 amount);
    /// @notice A verifier set whether `account` passes the allow-list gate.
    event AllowedSet(address indexed account, bool allowed);

    /// @notice The ERC-20 token participants stake.
    function stakeToken() external view returns (IERC20);

    /// @notice Minimum stake to register and to stay active.
    function minStake() external view returns (uint256);

    /// @notice Blocks between `requestWithdrawal` and `withdraw`; fixed at deployment.
    function unbondingBlocks() external view returns (uint64);

    /// @notice Whether registration and activity require a verifier's admission.
    function allowlistEnabled() external view returns (bool);

    /// @notice Whether `account` may take part in rounds now: registered, admitted if the gate is
    /// on, stake at least `minStake` and not exiting.
    function isActive(address account) external view returns (bool);

    /// @notice {isActive} of each of `accounts` in one call: bit `i % 256` of word `i / 256` is
    /// set when `accounts[i]` is active (a task's `stepViews` reads many accounts at once).
    function activeBits(address[] calldata accounts) external view returns (uint256[] memory bits);

    /// @notice Tokens currently bonded by `account`.
    function stakeOf(address account) external view returns (uint256);

    /// @notice The full registration record of `account`.
    function participant(address account) external view returns (Participant memory);

    /// @notice Registers the caller, pulling `amount` stake tokens (approve first).
    function register(uint256 amount) external;

    /// @notice Adds `amount` stake tokens to the caller's stake (approve first).
    function addStake(uint256 amount) external;

    /// @notice Leaves the active set now and starts the unbonding delay.
    function requestWithdrawal() external;

    /// @notice After the unbonding delay, pays the caller's whole remaining stake and unregisters it.
    function withdraw() external;

    /// @notice Takes up to `amount` from the stake of `account` and sends it to the caller.
    /// @return slashed The amount actually taken (capped at the current stake).
    function slash(address account, uint256 amount) external returns (uint256 slashed);

    /// @notice Sets whether `account` passes the allow-list gate (verifiers only).
    function setAllowed(address account, bool allowed) external;
}
