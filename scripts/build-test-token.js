// Compiles crates/ebb/tests/fixtures/TestToken.sol with solc-js into TestToken.bin (hex creation code).
// Run: node scripts/build-test-token.js            (writes the file)
//      node scripts/build-test-token.js --check    (fails if the committed file is out of date)
// solc comes from scripts/node (npm ci there).
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, 'node', 'node_modules', 'solc'));

const dir = path.join(__dirname, '..', 'crates', 'ebb', 'tests', 'fixtures');
const source = fs.readFileSync(path.join(dir, 'TestToken.sol'), 'utf8');
const input = {
  language: 'Solidity',
  sources: { 'TestToken.sol': { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'paris',
    metadata: { bytecodeHash: 'none' },
    outputSelection: { '*': { '*': ['evm.bytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join('\n'));
  process.exit(1);
}
const bin = output.contracts['TestToken.sol'].TestToken.evm.bytecode.object + '\n';
const target = path.join(dir, 'TestToken.bin');
if (process.argv.includes('--check')) {
  if (!fs.existsSync(target) || fs.readFileSync(target, 'utf8') !== bin) {
    console.error('TestToken.bin is out of date: run node scripts/build-test-token.js');
    process.exit(1);
  }
  console.log('TestToken.bin matches TestToken.sol (solc ' + solc.version() + ')');
} else {
  fs.writeFileSync(target, bin);
  console.log('wrote ' + target + ' (solc ' + solc.version() + ')');
}
