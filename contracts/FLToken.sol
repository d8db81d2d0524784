// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title FLToken
/// @notice Stake and reward token for local and test chains. Registries and tasks accept any
/// ERC-20; this one only adds an owner-controlled `mint` so a devnet can fund its accounts.
contract FLToken is ERC20, ERC20Permit, Ownable {
    /// @param name_ Token name (also the EIP-712 domain name used by `permit`).
    /// @param symbol_ Token symbol.
    /// @param owner_ Account allowed to mint.
    constructor(string memory name_, string memory symbol_, address owner_)
        ERC20(name_, symbol_)
        ERC20Permit(name_)
        Ownable(owner_)
    {}

    /// @notice Creates `amount` new tokens for `to` (owner only).
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
