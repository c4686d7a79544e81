#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "common/fd.h"
#include "parser/instructions.h"
#include "parser/parser.h"

namespace kiln::cli {
namespace {

struct ParseOptions {
  std::string file;
  bool dump = false;
  bool json = false;
};

// Without --dump/--json the file is also given meaning (flags, stage names),
// so every error `kiln build` would report at parse time is reported here.
int run_parse(const ParseOptions& options) {
  const auto text = read_small_file(options.file);
  if (!text) return fail(text.error().message);
  const auto dockerfile = parser::parse(*text, options.file);
  if (!dockerfile.ok()) return fail(dockerfile.error().message);
  if (options.dump) {
    std::cout << parser::dump(*dockerfile);
    return 0;
  }
  if (options.json) {
    std::cout << parser::to_json(*dockerfile);
    return 0;
  }
  const auto typed = parser::to_typed(*dockerfile);
  if (!typed.ok()) return fail(typed.error().message);
  std::cout << options.file << ": " << typed->stages.size() << " stages, " << typed->meta_args.size()
            << " global ARGs\n";
  for (std::size_t i = 0; i < typed->stages.size(); ++i) {
    const parser::Stage& stage = typed->stages[i];
    std::cout << "  stage " << i;
    if (!stage.from.stage_name.empty()) std::cout << " \"" << stage.from.stage_name << "\"";
    std::cout << " (line " << stage.range.start.line << "): " << stage.text << ", "
              << stage.instructions.size() << " more instructions\n";
  }
  for (const parser::Warning& warning : dockerfile->warnings) {
    std::fprintf(stderr, "kiln: warning: %s%s\n", parser::location_prefix(options.file, warning.position).c_str(),
                 warning.message.c_str());
  }
  return 0;
}

}  // namespace

Command add_parse_command(CLI::App& app) {
  auto options = std::make_shared<ParseOptions>();
  CLI::App* sub = app.add_subcommand("parse", "Parse a Dockerfile and report its stages, or errors with file:line:col");
  sub->add_option("file", options->file, "The Dockerfile")->required();
  auto* dump = sub->add_flag("--dump", options->dump, "Print the AST in BuildKit's dump format");
  sub->add_flag("--json", options->json, "Print the whole AST (heredocs, positions) as JSON")->excludes(dump);
  return {sub, [options] { return run_parse(*options); }};
}

}  // namespace kiln::cli
