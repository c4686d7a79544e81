#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "parser/parser.h"

namespace kiln::cli {
namespace {

struct ParseOptions {
  std::string file;
  bool dump = false;
};

int run_parse(const ParseOptions& options) {
  std::ifstream in(options.file, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "kiln: error: cannot read %s\n", options.file.c_str());
    return 1;
  }
  std::ostringstream text;
  text << in.rdbuf();
  const auto dockerfile = parser::parse(text.str(), options.file);
  if (!dockerfile.ok()) {
    std::fprintf(stderr, "kiln: error: %s\n", dockerfile.error().message.c_str());
    return 1;
  }
  if (options.dump) {
    std::cout << parser::dump(*dockerfile);
    return 0;
  }
  std::cout << dockerfile->filename << ": " << dockerfile->instructions.size() << " instructions\n";
  return 0;
}

}  // namespace

Command add_parse_command(CLI::App& app) {
  auto options = std::make_shared<ParseOptions>();
  CLI::App* sub = app.add_subcommand("parse", "Parse a Dockerfile and report its stages, or errors with file:line:col");
  sub->add_option("file", options->file, "The Dockerfile")->required();
  sub->add_flag("--dump", options->dump, "Print the AST in BuildKit's dump format");
  return {sub, [options] { return run_parse(*options); }};
}

}  // namespace kiln::cli
