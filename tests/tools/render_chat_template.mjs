// render_chat_template.mjs - renders a chat template with Hugging Face's JS Jinja engine
// (@huggingface/jinja), the independent oracle for lib/runtime/chat.cpp (tests/unit/chat_test.cpp).
//
// stdin: {"template", "messages": [{"role", "content"}], "bos_token", "eos_token",
//         "add_generation_prompt"} -> stdout: the rendering, as is.
//        An array of such requests -> stdout: a JSON array of the renderings (one node start).
// The package is looked up in ${FRUGAL_NODE_DIR:-$HOME/.cache/frugal-node} (scripts/setup-node-tools.sh);
// exit 77 when it is not there, 1 on bad input or a template error.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";

const dir = process.env.FRUGAL_NODE_DIR || join(homedir(), ".cache", "frugal-node");
let Template;
try {
    ({ Template } = createRequire(join(dir, "package.json"))("@huggingface/jinja"));
} catch {
    console.error(`@huggingface/jinja not found under ${dir} (run scripts/setup-node-tools.sh)`);
    process.exit(77);
}

const render = (r) =>
    new Template(r.template).render({
        messages: r.messages,
        bos_token: r.bos_token ?? "",
        eos_token: r.eos_token ?? "",
        add_generation_prompt: r.add_generation_prompt ?? false,
    });

const input = JSON.parse(readFileSync(0, "utf8"));
process.stdout.write(Array.isArray(input) ? JSON.stringify(input.map(render)) : render(input));
