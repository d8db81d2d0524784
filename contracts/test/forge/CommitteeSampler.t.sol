// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {CommitteeSampler} from "../../libraries/CommitteeSampler.sol";
import {ForgeTest} from "./Vm.sol";

/// @notice `position` (unrolled in assembly, run by every reveal) and `indexAt` (the Solidity
/// Feistel network run backwards) are inverse bijections of `[0, n)` for any seed: so the
/// assembly computes exactly the permutation the Solidity code and the Python sampler define.
contract CommitteeSamplerTest is ForgeTest {
    function testFuzz_positionInvertsIndexAt(uint96 seed, uint256 n, uint256 pos) public pure {
        n = bound(n, 1, (1 << 24) - 1);
        pos = bound(pos, 0, n - 1);
        uint256 index = CommitteeSampler.indexAt(seed, n, pos);
        require(index < n, "index out of range");
        require(CommitteeSampler.position(seed, n, index) == pos, "position does not invert indexAt");
    }

    function testFuzz_indexAtInvertsPosition(uint96 seed, uint256 n, uint256 index) public pure {
        n = bound(n, 1, 300); // small rounds too, where cycle walking runs most
        index = bound(index, 0, n - 1);
        uint256 pos = CommitteeSampler.position(seed, n, index);
        require(pos < n, "position out of range");
        require(CommitteeSampler.indexAt(seed, n, pos) == index, "indexAt does not invert position");
    }
}
