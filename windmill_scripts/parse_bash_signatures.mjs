// Prints, as JSON, the input signature Windmill itself infers from each bash script given
// on the command line (Windmill's own parser, windmill-parser-wasm-regex, shipped with the
// wmill CLI). Usage: node parse_bash_signatures.mjs NODE_MODULES_DIR FILE.sh...
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
const dir = join(modules, "windmill-parser-wasm-regex");
const parser = await import(pathToFileURL(join(dir, "windmill_parser_wasm.js")).href);
parser.initSync({ module: readFileSync(join(dir, "windmill_parser_wasm_bg.wasm")) });
const out = {};
for (const file of files) {
  const sig = JSON.parse(parser.parse_bash(readFileSync(file, "utf8")));
  out[file] = sig.args.map((a) => ({ name: a.name, default: a.has_default ? a.default : null }));
}
process.stdout.write(JSON.stringify(out, null, 1) + "\n");
