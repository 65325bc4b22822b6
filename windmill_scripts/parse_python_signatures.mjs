// Prints, as JSON, the signature Windmill itself infers from each Python script's `main`
// (windmill-parser-wasm-py, the copy windmill-cli pins) and the workspace scripts it
// imports (windmill-parser-wasm-py-imports). Usage:
//   node parse_python_signatures.mjs NODE_MODULES_DIR FILE.py...
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
async function load(name) {
  const dir = join(modules, name);
  const mod = await import(pathToFileURL(join(dir, "windmill_parser_wasm.js")).href);
  mod.initSync({ module: readFileSync(join(dir, "windmill_parser_wasm_bg.wasm")) });
  return mod;
}
const py = await load("windmill-parser-wasm-py");
const imports = await load("windmill-parser-wasm-py-imports");
const out = {};
for (const file of files) {
  const code = readFileSync(file, "utf8");
  const sig = JSON.parse(py.parse_python(code));
  sig.relative_imports = imports.parse_py_relative_imports(code, "f/omni/step");
  out[file] = sig;
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
