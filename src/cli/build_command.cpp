// `kiln build`: `docker build` (BuildKit / buildx flags) into the local store.
//
//   options -> context (directory, tar or Dockerfile on stdin, git or http URL)
//           -> parse the Dockerfile -> .dockerignore -> plan (bases through StoreImageSource)
//           -> executor::build -> tags -> outputs (store, oci/docker archive, local dir, tar,
//              push) -> --iidfile / --metadata-file / -q
//
// Everything the build prints goes to stderr through executor::Progress; stdout stays empty
// unless -q (the image ID) or an output written to `-`.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <nlohmann/json.hpp>

#include "cache/compression.h"
#include "cache/context.h"
#include "cache/layer_writer.h"
#include "cache/store.h"
#include "cli/commands.h"
#include "cli/output_specs.h"
#include "cli/remote_cache.h"
#include "cli/stored_images.h"
#include "common/fd.h"
#include "common/output_file.h"
#include "common/path.h"
#include "common/remove_tree.h"
#include "executor/executor.h"
#include "executor/progress.h"
#include "executor/remote_source.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "parser/dockerignore.h"
#include "parser/instructions.h"
#include "parser/parser.h"
#include "parser/text.h"
#include "planner/planner.h"
#include "push/image_archive.h"
#include "push/puller.h"
#include "push/pusher.h"
#include "sandbox/rootfs.h"
#include "sandbox/sandbox.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

struct BuildArgs {
  std::string context;  // PATH, URL or "-"
  std::vector<std::string> tags;
  std::string file;  // -f; empty: <context>/Dockerfile
  std::string target;
  std::vector<std::string> build_args;
  bool no_cache = false;
  std::vector<std::string> no_cache_filter;
  bool pull = false;
  std::string progress = "auto";
  bool quiet = false;
  std::string iidfile;
  std::string metadata_file;
  std::vector<std::string> labels;
  std::vector<std::string> platforms;
  std::vector<std::string> secrets;
  std::vector<std::string> ssh;
  int jobs = 0;  // 0: one per hardware thread
  bool explain_cache = false;
  std::vector<std::string> insecure_registries;
  std::vector<std::string> outputs;
  bool push = false;
  std::vector<std::string> cache_from;  // --cache-from: type=registry,ref=... (or a bare ref)
  std::vector<std::string> cache_to;    // --cache-to: type=registry,ref=...[,mode=min|max]
  std::string shm_size;                 // --shm-size: a size (`128m`); empty: the default
  std::vector<std::string> ulimits;     // --ulimit: name=soft[:hard]
};

// ---- option values ------------------------------------------------------------------------

// `K=V` pairs of a repeated flag; with `from_environment`, a bare `K` takes K's value from
// the environment and is left out when K is not set there (docker's --build-arg rule).
Result<std::map<std::string, std::string>> parse_pairs(const std::vector<std::string>& values, const char* flag,
                                                       bool from_environment) {
  std::map<std::string, std::string> pairs;
  for (const std::string& value : values) {
    const auto equals = value.find('=');
    if (equals == 0) return Error{std::string("invalid ") + flag + " \"" + value + "\": no name"};
    if (equals != std::string::npos) {
      pairs[value.substr(0, equals)] = value.substr(equals + 1);
    } else if (!from_environment) {
      pairs[value] = "";  // docker's --label K: an empty label
    } else if (const char* set = std::getenv(value.c_str())) {
      pairs[value] = set;
    }
  }
  return pairs;
}

// kiln builds for the machine it runs on; --platform may only name that one.
Result<void> check_platforms(const std::vector<std::string>& values) {
  const oci::Platform host = oci::Platform::host();
  for (const std::string& value : values) {
    for (const std::string& field : split_csv(value)) {
      if (field.empty()) continue;
      auto platform = oci::Platform::parse(field);
      if (!platform) return platform.error();
      if (!host.matches(*platform)) {
        return Error{"--platform " + field + ": kiln builds only for the host platform (" + host.str() +
                     ") yet"};
      }
    }
  }
  return {};
}

// `--secret id=ID,src=FILE`, `id=ID,env=VAR`, with `type=file|env`; buildx's rules: type=env
// without env= reads the variable named by src=; neither src nor env reads $ID when set,
// else the file ID (BuildKit's secrets provider). An env secret whose variable is unset is
// left out, as BuildKit does: a RUN that requires it then fails, an optional one goes on.
Result<std::vector<executor::Secret>> parse_secrets(const std::vector<std::string>& values) {
  std::vector<executor::Secret> secrets;
  for (const std::string& value : values) {
    std::string id, type, src, env;
    for (const std::string& field : split_csv(value)) {
      const auto equals = field.find('=');
      if (equals == std::string::npos) {
        return Error{"invalid --secret \"" + value + "\": field '" + field + "' must be a key=value pair"};
      }
      const std::string key = field.substr(0, equals), val = field.substr(equals + 1);
      if (key == "id") {
        id = val;
      } else if (key == "type") {
        if (val != "file" && val != "env") return Error{"invalid --secret \"" + value + "\": unsupported type " + val};
        type = val;
      } else if (key == "src" || key == "source") {
        src = val;
      } else if (key == "env") {
        env = val;
      } else {
        return Error{"invalid --secret \"" + value + "\": unexpected key '" + key + "'"};
      }
    }
    if (id.empty()) return Error{"invalid --secret \"" + value + "\": no id"};
    if (type == "env" && env.empty()) std::swap(env, src);
    if (src.empty() && env.empty()) {
      if (std::getenv(id.c_str()) != nullptr) {
        env = id;
      } else {
        src = id;
      }
    }
    executor::Secret secret{id, std::nullopt, std::nullopt};
    if (!env.empty()) {
      const char* set = std::getenv(env.c_str());
      if (set == nullptr) continue;
      secret.value = set;
    } else {
      struct stat info{};
      if (::stat(src.c_str(), &info) != 0) return sys_error("--secret " + id + ": stat", src);
      secret.file = fs::absolute(src);
    }
    secrets.push_back(std::move(secret));
  }
  return secrets;
}

// `--ssh default`, `--ssh default=SOCKET`, `--ssh ID=SOCKET`.
Result<std::vector<executor::SshAgent>> parse_ssh(const std::vector<std::string>& values) {
  std::vector<executor::SshAgent> agents;
  for (const std::string& value : values) {
    const auto equals = value.find('=');
    executor::SshAgent agent;
    agent.id = value.substr(0, equals);
    if (agent.id.empty()) return Error{"invalid --ssh \"" + value + "\": no id"};
    if (equals != std::string::npos) {
      agent.socket = fs::absolute(value.substr(equals + 1));
    } else {
      const char* socket = std::getenv("SSH_AUTH_SOCK");
      if (socket == nullptr || *socket == '\0') {
        return Error{"--ssh " + agent.id + ": SSH_AUTH_SOCK is not set (give the agent's socket: " + agent.id +
                     "=PATH)"};
      }
      agent.socket = socket;
    }
    agents.push_back(std::move(agent));
  }
  return agents;
}

// buildx's --shm-size: a size with go-units' suffixes (`128m`, `134217728`), in bytes.
Result<std::uint64_t> parse_shm_size(const std::string& text) {
  if (text.empty()) return std::uint64_t{0};
  const auto size = parser::parse_ram_size(text);
  if (!size) return Error{"invalid argument \"" + text + "\" for \"--shm-size\" flag: invalid size: '" + text + "'"};
  return static_cast<std::uint64_t>(*size);
}

// One buildx --ulimit, `name=soft[:hard]` (hard defaults to soft; -1 is unlimited), with
// go-units' ParseUlimit's checks and messages.
Result<planner::Ulimit> parse_ulimit(const std::string& text) {
  auto invalid = [&](const std::string& why) { return Error{"invalid --ulimit \"" + text + "\": " + why}; };
  const auto equals = text.find('=');
  if (equals == std::string::npos) return invalid("invalid ulimit argument: " + text);
  planner::Ulimit ulimit;
  ulimit.name = text.substr(0, equals);
  if (!sandbox::rlimit_resource(ulimit.name)) return invalid("invalid ulimit type: " + ulimit.name);
  const std::string values = text.substr(equals + 1);
  const auto colon = values.find(':');
  if (colon != std::string::npos && values.find(':', colon + 1) != std::string::npos) {
    return invalid("too many limit value arguments - " + values + ", can only have up to two, `soft[:hard]`");
  }
  const auto soft = parser::text::parse_int64(values.substr(0, colon));
  const auto hard = colon == std::string::npos ? soft : parser::text::parse_int64(values.substr(colon + 1));
  if (!soft || !hard) return invalid("limits must be integers: " + values);
  if (*hard != -1 && *soft > *hard) {
    return invalid("ulimit soft limit must be less than or equal to hard limit: " + std::to_string(*soft) + " > " +
                   std::to_string(*hard));
  }
  ulimit.soft = *soft;
  ulimit.hard = *hard;
  return ulimit;
}

// ---- scratch space and context input --------------------------------------------------------

// A private directory in the store's tmp/ (a context can be big: not a tmpfs /tmp), removed
// with its contents when the build ends, or by the store's next open() after a crash.
class ScratchSpace {
 public:
  static Result<ScratchSpace> make(cache::Store& store) {
    const fs::path dir = store.scratch_path("build");
    if (::mkdir(dir.c_str(), 0700) != 0) return sys_error("mkdir", dir.string());
    return ScratchSpace(dir);
  }
  ScratchSpace(ScratchSpace&& other) noexcept : dir_(std::move(other.dir_)) { other.dir_.clear(); }
  ScratchSpace& operator=(ScratchSpace&&) = delete;
  ~ScratchSpace() {
    if (dir_.empty()) return;
    remove_tree_or_warn(dir_);
  }
  const fs::path& dir() const { return dir_; }
  // A new, empty directory inside.
  Result<fs::path> subdir(const std::string& name) const {
    const fs::path path = dir_ / name;
    if (::mkdir(path.c_str(), 0700) != 0) return sys_error("mkdir", path.string());
    return path;
  }

 private:
  explicit ScratchSpace(fs::path dir) : dir_(std::move(dir)) {}
  fs::path dir_;  // empty once moved from
};

// A tar entry name made safe to extract under `root`: relative, no `..`; else an error.
Result<fs::path> contained_path(const fs::path& root, const char* name) {
  if (name == nullptr) return Error{"context archive: an entry without a name"};
  const fs::path relative = fs::path(name).lexically_normal();
  if (relative.is_absolute() || relative.empty() || *relative.begin() == "..") {
    return Error{std::string("context archive: entry \"") + name + "\" points outside the context"};
  }
  return root / relative;
}

// Extracts the tar (plain, gzip, bzip2, xz or zstd: one decompression, by the first bytes,
// as Docker does) read from `fd` into the empty directory `dest` as it streams (nothing is
// copied first: a context of any size costs its size once), or, when the stream is not a
// tar at all (docker's rule for stdin: then it is a Dockerfile), returns its text, at most
// kSmallFileLimit. nullopt after an extraction. Entries are confined to `dest`: absolute
// names and `..` are refused and nothing is written through a symlink
// (ARCHIVE_EXTRACT_SECURE_SYMLINKS); devices are skipped and owners are not restored
// (neither is part of what COPY takes from a context). `shown` names the stream in errors
// as the user knows it ("stdin", the URL).
Result<std::optional<std::string>> extract_or_read_dockerfile(int fd, std::string_view shown, const fs::path& dest) {
  // What is read before a first tar header is kept: if the stream is no tar, it begins the
  // Dockerfile, and the rest follows.
  cache::DecompressedArchive::Record record;
  record.limit = kSmallFileLimit;
  const auto as_dockerfile = [&](std::string_view why) -> Result<std::optional<std::string>> {
    if (record.read_failed) return Error{"cannot read " + std::string(shown) + ": " + std::string(why)};
    const auto compression = cache::detect_compression(record.bytes.data(), record.bytes.size(),
                                                       cache::Decompressors::archive);
    if (compression != cache::StreamCompression::none) {  // compressed, so meant as a context
      return Error{"cannot read " + std::string(shown) + ": the " + cache::to_string(compression) +
                   " data is no tar archive after one decompression"};
    }
    auto text = read_capped(fd, kSmallFileLimit, shown, std::move(record.bytes));
    if (!text) return text.error();
    return std::optional<std::string>(std::move(text).value());
  };
  auto decompressed = cache::DecompressedArchive::open(fd, cache::Decompressors::archive,
                                                       cache::DecompressedArchive::Format::tar, &record);
  if (!decompressed) return as_dockerfile(decompressed.error().message);
  archive* reader = (*decompressed)->get();
  std::unique_ptr<archive, decltype(&archive_write_free)> writer(archive_write_disk_new(), archive_write_free);
  if (!writer) return Error{"context archive: out of memory"};
  // SPARSE: zero blocks stay holes, so a sparse file in the tar costs its data, not its length.
  archive_write_disk_set_options(writer.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                   ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                                                   ARCHIVE_EXTRACT_SPARSE);
  for (;;) {
    archive_entry* entry = nullptr;
    const int status = archive_read_next_header(reader, &entry);
    if (status == ARCHIVE_EOF) return std::optional<std::string>();
    if (status < ARCHIVE_WARN) {
      // Recording stops at the first header: no header yet means the stream is no tar.
      if (!record.stopped) return as_dockerfile(archive_error_string(reader));
      return Error{std::string("context archive: ") + archive_error_string(reader)};
    }
    record.stopped = true;  // a tar: what is read need not be kept
    const auto type = archive_entry_filetype(entry);
    if (type == AE_IFCHR || type == AE_IFBLK) continue;
    auto target = contained_path(dest, archive_entry_pathname(entry));
    if (!target) return target.error();
    archive_entry_set_pathname(entry, target->c_str());
    if (const char* link = archive_entry_hardlink(entry)) {
      auto link_target = contained_path(dest, link);
      if (!link_target) return link_target.error();
      archive_entry_set_hardlink(entry, link_target->c_str());
    }
    if (archive_write_header(writer.get(), entry) < ARCHIVE_WARN) {
      return Error{std::string("context archive: ") + archive_error_string(writer.get())};
    }
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    for (;;) {
      const int read = archive_read_data_block(reader, &block, &size, &offset);
      if (read == ARCHIVE_EOF) break;
      if (read < ARCHIVE_WARN) return Error{std::string("context archive: ") + archive_error_string(reader)};
      if (archive_write_data_block(writer.get(), block, size, offset) < ARCHIVE_WARN) {
        return Error{std::string("context archive: ") + archive_error_string(writer.get())};
      }
    }
    if (archive_write_finish_entry(writer.get()) < ARCHIVE_WARN) {
      return Error{std::string("context archive: ") + archive_error_string(writer.get())};
    }
  }
}

// What the build reads: the context directory (none for a Dockerfile alone on stdin) and
// the Dockerfile's text.
struct BuildInput {
  std::optional<fs::path> context_dir;
  std::string dockerfile_text;
  std::string dockerfile_name = "Dockerfile";  // labels errors: `Dockerfile:3:1: ...`
  fs::path dockerfile_path;                    // for <Dockerfile>.dockerignore; empty from stdin
  // How errors name files in the context: under the directory the user gave, or bare
  // (".dockerignore") in a context kiln fetched or unpacked, whose path means nothing to them.
  fs::path shown_dir;
};

// The context when it came as one stream (stdin, an http URL's file): a tar becomes the
// context directory, anything else is the Dockerfile of a build with no context. `shown`
// names the stream in errors as the user knows it ("stdin", the URL), never a scratch copy.
Result<BuildInput> input_from_stream(int fd, std::string_view shown, const ScratchSpace& scratch) {
  auto dir = scratch.subdir("context");
  if (!dir) return dir.error();
  auto dockerfile = extract_or_read_dockerfile(fd, shown, *dir);
  if (!dockerfile) return dockerfile.error();
  BuildInput input;
  if (!*dockerfile) {
    input.context_dir = *dir;
  } else {
    input.dockerfile_text = std::move(**dockerfile);
  }
  return input;
}

// The Dockerfile at `relative` inside the context, resolved in it as every COPY source is
// (a symlink out of the context reaches nothing outside). `shown_dir` prefixes the name
// in errors: the context as the user gave it, or empty for a context kiln unpacked.
Result<std::string> read_in_context(const fs::path& context_dir, const std::string& relative,
                                    const fs::path& shown_dir) {
  UniqueFd root(::open(context_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return sys_error("open", context_dir.string());
  return read_small_file_in_root(root.get(), relative, (shown_dir / relative).string());
}

// Where the Dockerfile is inside `context`; nullopt for a local -f file outside it. A
// fetched context takes -f relative to itself, whatever it says.
std::optional<std::string> dockerfile_in_context(const BuildArgs& args, bool local_context, const fs::path& context) {
  if (args.file.empty()) return "Dockerfile";
  if (local_context) return path_within(context, args.file);
  return fs::path(args.file).relative_path().lexically_normal().string();
}

// Reads the Dockerfile of `input` (which has a context) as the flags say: `-f -` is stdin,
// `-f FILE` is relative to the working directory for a local context and to the context
// for a fetched one, no -f is <context>/Dockerfile (or `dockerfile`, as docker falls back).
// Whatever lies in the context is read inside it; only a local -f file outside the
// context is read as the user's own path. Every read is capped (kSmallFileLimit) and
// refuses special files, so neither a FIFO nor /dev/zero can hang or exhaust the build.
Result<void> read_dockerfile(const BuildArgs& args, bool local_context, BuildInput& input) {
  const fs::path& context = *input.context_dir;
  input.shown_dir = local_context ? context : fs::path();
  if (args.file == "-") {
    auto text = read_capped(STDIN_FILENO, kSmallFileLimit, "stdin");
    if (!text) return text.error();
    input.dockerfile_text = std::move(text).value();
    return {};
  }
  const fs::path& shown_dir = input.shown_dir;
  std::optional<std::string> relative = dockerfile_in_context(args, local_context, context);
  auto text = relative ? read_in_context(context, *relative, shown_dir) : read_small_file(args.file);
  if (!text && errno == ENOENT && args.file.empty()) {
    // docker takes a lower-case `dockerfile` too (moby/moby#10858); when neither exists,
    // the error stays about `Dockerfile`.
    if (auto lower = read_in_context(context, "dockerfile", shown_dir)) {
      relative = "dockerfile";
      text = std::move(lower);
    }
  }
  if (!text) return text.error();
  const fs::path path = relative ? context / *relative : fs::path(args.file);
  input.dockerfile_text = std::move(text).value();
  input.dockerfile_name = path.filename().string();
  input.dockerfile_path = path;
  return {};
}

// A git repository as the context: what docker and BuildKit take for one, plus `file://`
// URLs (a local repository; kiln's addition: a directory context is never spelled so).
bool is_git_context(std::string_view context) {
  return context.starts_with("file://") || executor::classify_add_source(context) == executor::AddSourceKind::git;
}

Result<BuildInput> prepare_input(const BuildArgs& args, const ScratchSpace& scratch) {
  if (args.context == "-" && args.file == "-") {
    return Error{"invalid argument: can't use stdin for both build context and dockerfile"};
  }
  BuildInput input;
  bool local_context = false;
  if (args.context == "-") {
    auto from_stdin = input_from_stream(STDIN_FILENO, "stdin", scratch);
    if (!from_stdin) return from_stdin.error();
    input = std::move(from_stdin).value();
    if (!input.context_dir) {
      if (!args.file.empty()) return Error{"-f cannot be used when the Dockerfile comes on stdin"};
      return input;
    }
  } else if (is_git_context(args.context)) {
    executor::FetchOptions options;
    auto fetched = executor::fetch_git(args.context, scratch.dir(), options);
    if (!fetched) return Error{"unable to prepare context: " + fetched.error().message};
    input.context_dir = fetched->dir;
  } else if (executor::classify_add_source(args.context) == executor::AddSourceKind::http) {
    auto fetched = executor::fetch_http(args.context, scratch.dir(), {});
    if (!fetched) return Error{"unable to prepare context: " + fetched.error().message};
    const fs::path file = fetched->dir / fetched->name;
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return sys_error("open", file.string());
    auto from_url = input_from_stream(fd.get(), args.context, scratch);
    if (!from_url) return from_url.error();
    input = std::move(from_url).value();
    if (!input.context_dir) return input;
  } else {
    struct stat info{};
    if (::stat(args.context.c_str(), &info) != 0) {
      if (errno == ENOENT) return Error{"unable to prepare context: path \"" + args.context + "\" not found"};
      return Error{"unable to prepare context: " + sys_error("stat", args.context).message};
    }
    if (!S_ISDIR(info.st_mode)) return Error{"unable to prepare context: context must be a directory: " + args.context};
    input.context_dir = fs::path(args.context);
    local_context = true;
  }
  if (auto r = read_dockerfile(args, local_context, input); !r) return r.error();
  return input;
}

// ---- base images --------------------------------------------------------------------------------

// Base images for the planner and the executor: found in the store by reference, else (or
// always, with --pull) pulled. Each (reference, platform) is resolved once per build and the
// same answer given every time after, from any thread. Each resolution is a progress
// vertex, as BuildKit's `[internal] load metadata for ...`.
class StoreImageSource final : public executor::ImageSource {
 public:
  StoreImageSource(cache::Store& store, executor::Progress& progress, push::PullOptions pull_options,
                   bool always_pull)
      : store_(store), progress_(progress), pull_options_(std::move(pull_options)), always_pull_(always_pull) {}

  Result<executor::SourceImage> get(const oci::Reference& reference, const oci::Platform& platform) override {
    std::shared_ptr<Entry> entry;
    {
      std::lock_guard lock(mutex_);
      auto& slot = entries_[reference.str() + " " + platform.str()];
      if (!slot) slot = std::make_shared<Entry>();
      entry = slot;
    }
    // Other threads asking for the same image wait here for the one resolution.
    std::call_once(entry->once, [&] { entry->result.emplace(resolve(reference, platform)); });
    return *entry->result;
  }

 private:
  struct Entry {
    std::once_flag once;
    std::optional<Result<executor::SourceImage>> result;  // set inside `once`
  };

  Result<executor::SourceImage> resolve(const oci::Reference& reference, const oci::Platform& platform) {
    const executor::VertexId vertex = progress_.start("[internal] load metadata for " + reference.str());
    auto image = resolve_image(reference, platform, vertex);
    if (!image) {
      progress_.error(vertex, image.error().message);
      return image.error();
    }
    progress_.done(vertex);
    return image;
  }

  // The stored image when it is for `platform`, else pulled. A pulled image of another
  // platform (a single-platform manifest) is used, as BuildKit does after its warning
  // (InvalidBaseImagePlatform, which the puller logs).
  Result<executor::SourceImage> resolve_image(const oci::Reference& reference, const oci::Platform& platform,
                                              executor::VertexId vertex) {
    std::optional<oci::Platform> stored_platform;  // of a stored image for another platform
    if (!always_pull_) {
      auto stored = from_store(reference, platform);
      if (!stored) return stored.error();
      if (*stored && platform.matches((*stored)->config.platform())) return std::move(**stored);
      if (*stored) stored_platform = (*stored)->config.platform();
    }
    push::PullOptions options = pull_options_;
    options.progress = [this, vertex](const push::PullProgress& step) {
      if (step.stage != push::PullProgress::Stage::layer_downloaded) return;
      progress_.log(vertex, step.digest.str() + " " + human_size(step.size) + " downloaded\n");
    };
    auto pulled = push::pull(reference, platform, store_, options);
    if (!pulled) {
      if (!stored_platform) return pulled.error();
      return Error{reference.str() + " is stored for " + stored_platform->str() + ", not the build's " +
                   platform.str() + ", and pulling it for " + platform.str() + " failed: " + pulled.error().message};
    }
    auto image = from_store(reference, platform, pulled->manifest_digest);
    if (!image) return image.error();
    if (!image->has_value()) return Error{"pull " + reference.str() + ": the pulled manifest is not an image"};
    return std::move(**image);
  }

  // The stored image `reference` names (see stored_manifest: a digest by content only, an
  // index's entry for `platform`), or the manifest `pinned`, with its layers extracted,
  // whatever its platform; nullopt when the store has none.
  Result<std::optional<executor::SourceImage>> from_store(const oci::Reference& reference,
                                                          const oci::Platform& platform,
                                                          std::optional<Digest> pinned = std::nullopt) {
    if (!pinned) {
      auto target = stored_manifest(store_, reference, platform);
      if (!target) return target.error();
      if (!target->has_value()) return std::optional<executor::SourceImage>();
      pinned = **target;
    }
    auto stored = load_image(store_, *pinned);
    if (!stored) return std::optional<executor::SourceImage>();  // an index or foreign ref: pull
    executor::SourceImage image{stored->manifest_digest, std::move(stored->config), stored->manifest.layers, {}};
    for (std::size_t i = 0; i < image.layers.size(); ++i) {
      auto snapshot = store_.snapshot(image.config.rootfs.diff_ids[i], image.layers[i].digest);
      if (!snapshot) return Error{reference.str() + ": " + snapshot.error().message};
      image.snapshots.push_back(std::move(snapshot).value());
    }
    return std::optional<executor::SourceImage>(std::move(image));
  }

  cache::Store& store_;
  executor::Progress& progress_;
  const push::PullOptions pull_options_;
  const bool always_pull_;
  std::mutex mutex_;  // guards entries_ (not the entries' results: see get())
  std::map<std::string, std::shared_ptr<Entry>> entries_;  // by "reference platform"
};

planner::BaseImageResolver base_resolver(StoreImageSource& images) {
  return [&images](const oci::Reference& reference, const oci::Platform& platform) -> Result<planner::BaseImageConfig> {
    auto image = images.get(reference, platform);
    if (!image) return image.error();
    const oci::ContainerConfig& config = image->config.config;
    return planner::BaseImageConfig{config.env, config.working_dir, config.user, config.shell, config.on_build};
  };
}

// ---- outputs --------------------------------------------------------------------------------------

// A type=local destination must be an empty directory or nothing yet.
Result<void> check_local_dest(const fs::path& dest) {
  std::error_code error;
  const fs::file_status status = fs::status(dest, error);
  if (status.type() == fs::file_type::not_found) return {};
  if (error) return Error{"output directory " + dest.string() + ": " + error.message()};
  if (status.type() != fs::file_type::directory) return Error{"output directory " + dest.string() + " is not a directory"};
  if (!fs::is_empty(dest, error)) return Error{"output directory " + dest.string() + " is not empty"};
  return {};
}

// The image's root filesystem (layers applied, whiteouts resolved) in `dest`, which must be
// empty or absent. `privileges` says whether device nodes and setuid/setgid bits are kept.
Result<void> export_rootfs(const std::vector<fs::path>& snapshots, const fs::path& dest,
                           sandbox::Privileges privileges) {
  if (auto checked = check_local_dest(dest); !checked) return checked;
  std::error_code error;
  fs::create_directories(dest, error);
  if (error) return Error{"mkdir " + dest.string() + ": " + error.message()};
  // copy_layers takes the layers top-most first, as overlayfs does.
  return sandbox::copy_layers(std::vector<fs::path>(snapshots.rbegin(), snapshots.rend()), dest, privileges);
}

// The directory tree `dir` as a tar in `out` (type=tar), committed: the layer writer's
// uncompressed tar (sorted, numeric owners, modes, xattrs and hard links kept), from
// directory descriptors like every walk of an image's tree.
Result<void> write_tree_tar(const fs::path& dir, OutputFile& out) {
  cache::LayerWriteOptions options;
  options.compression = cache::LayerCompression::none;
  if (auto written = cache::write_layer(dir, out.fd(), options); !written) {
    return Error{"tar output " + out.dest() + ": " + written.error().message};
  }
  return out.commit();
}

// The files a build writes, opened before it starts so that a destination that cannot be
// written fails the build before any work, with the reason.
struct OutputFiles {
  std::vector<std::optional<OutputFile>> outputs;  // by --output position; set for oci, docker, tar
  std::optional<OutputFile> iidfile;
  std::optional<OutputFile> metadata_file;
};

Result<OutputFiles> open_output_files(const std::vector<OutputSpec>& outputs, const std::string& iidfile,
                                      const std::string& metadata_file) {
  OutputFiles files;
  for (const OutputSpec& output : outputs) {
    files.outputs.emplace_back();
    if (output.kind == OutputSpec::Kind::image) continue;
    if (output.kind == OutputSpec::Kind::local) {
      if (auto checked = check_local_dest(output.dest); !checked) return checked.error();
      continue;
    }
    auto file = OutputFile::create(output.dest);
    if (!file) return file.error();
    files.outputs.back().emplace(std::move(file).value());
  }
  auto iid = create_if_given(iidfile);
  if (!iid) return iid.error();
  files.iidfile = std::move(iid).value();
  auto metadata = create_if_given(metadata_file);
  if (!metadata) return metadata.error();
  files.metadata_file = std::move(metadata).value();
  return files;
}

// What the outputs need of the finished build.
struct Exporter {
  cache::Store& store;
  executor::Progress& progress;
  const executor::BuildResult& result;
  const ScratchSpace& scratch;
  const std::vector<oci::Reference>& tags;
  push::PushOptions push_options;
  std::optional<push::PushedImage> pushed;  // set by the last push

  // Points every name at the image and reports it as BuildKit's exporter does.
  Result<void> name_image(executor::VertexId vertex, const std::vector<oci::Reference>& names) {
    for (const oci::Reference& name : names) {
      if (auto r = store.set_ref(name.str(), result.manifest_digest); !r) return r;
      progress.log(vertex, "naming to " + name.str() + " done\n");
    }
    return {};
  }

  Result<std::vector<oci::Reference>> names_of(const OutputSpec& output) {
    if (output.names.empty()) return tags;
    std::vector<oci::Reference> names;
    for (const std::string& text : output.names) {
      auto name = oci::Reference::parse_tag(text);
      if (!name) return name.error();
      names.push_back(std::move(name).value());
    }
    return names;
  }

  Result<void> push(executor::VertexId vertex, const std::vector<oci::Reference>& names) {
    if (names.empty()) return Error{"push: the image has no name (give -t or --output type=image,name=...)"};
    push::PushOptions options = push_options;
    options.progress = [this, vertex](const push::PushProgress& step) {
      using Stage = push::PushProgress::Stage;
      const std::string blob = step.digest.str();
      if (step.stage == Stage::uploaded) progress.log(vertex, "pushing layer " + blob + " done\n");
      if (step.stage == Stage::exists) progress.log(vertex, "layer " + blob + " already exists\n");
      if (step.stage == Stage::mounted) progress.log(vertex, "mounted " + blob + " from " + step.source + "\n");
      if (step.stage == Stage::manifest) progress.log(vertex, "pushing manifest for " + step.reference + " done\n");
    };
    auto pushed_image = push::push_image(store, result.manifest_digest, names, options);
    if (!pushed_image) return pushed_image.error();
    pushed = std::move(pushed_image).value();
    return {};
  }

  // An oci or docker archive of the image under `names` (a temporary name when there is
  // none: save_archive writes what refs point at).
  Result<void> save(const OutputSpec& output, const std::vector<oci::Reference>& names, OutputFile& file) {
    std::vector<oci::Reference> refs = names;
    std::optional<std::string> temporary;
    if (refs.empty()) {
      auto name = oci::Reference::parse("localhost/kiln-build:" + result.config_digest.hex().substr(0, 12));
      if (!name) return name.error();
      temporary = name->str();
      refs.push_back(std::move(name).value());
    }
    for (const oci::Reference& ref : refs) {
      if (auto r = store.set_ref(ref.str(), result.manifest_digest); !r) return r;
    }
    auto saved = push::save_archive(store, refs, output.kind == OutputSpec::Kind::oci ? push::ArchiveFormat::oci
                                                                                       : push::ArchiveFormat::docker,
                                    file);
    if (temporary) (void)store.delete_ref(*temporary);
    return saved;
  }

  // The tar carries the image's devices and setuid files as entries: whoever extracts it
  // decides what to recreate, as with an oci archive.
  Result<void> rootfs_tar(OutputFile& file) {
    auto dir = scratch.subdir("rootfs");
    if (!dir) return dir.error();
    if (auto r = export_rootfs(result.snapshots, *dir, sandbox::Privileges::keep); !r) return r;
    return write_tree_tar(*dir, file);
  }

  // Runs one output; `file` is its open destination (oci, docker, tar), null for the others.
  Result<void> run(const OutputSpec& output, OutputFile* file) {
    switch (output.kind) {
      case OutputSpec::Kind::image: {
        const executor::VertexId vertex = progress.start("exporting to image");
        progress.log(vertex, "writing image " + result.config_digest.str() + " done\n");
        auto names = names_of(output);
        Result<void> done = names ? name_image(vertex, *names) : Result<void>(names.error());
        if (done && output.push) done = push(vertex, *names);
        return finish(vertex, done);
      }
      case OutputSpec::Kind::oci:
      case OutputSpec::Kind::docker: {
        const executor::VertexId vertex = progress.start(
            std::string("exporting to ") + (output.kind == OutputSpec::Kind::oci ? "oci" : "docker") + " image format");
        auto names = names_of(output);
        Result<void> done = names ? save(output, *names, *file) : Result<void>(names.error());
        if (done) progress.log(vertex, "sending tarball " + output.dest + " done\n");
        return finish(vertex, done);
      }
      case OutputSpec::Kind::local: {
        const executor::VertexId vertex = progress.start("exporting to client directory");
        // The host is not the image's sandbox: no device nodes, no setuid/setgid files on it.
        Result<void> done = export_rootfs(result.snapshots, output.dest, sandbox::Privileges::drop);
        if (done) progress.log(vertex, "copying files to " + output.dest + " done\n");
        return finish(vertex, done);
      }
      case OutputSpec::Kind::tar: {
        const executor::VertexId vertex = progress.start("exporting to client tarball");
        return finish(vertex, rootfs_tar(*file));
      }
    }
    return {};
  }

  Result<void> finish(executor::VertexId vertex, Result<void> outcome) {
    if (outcome) {
      progress.done(vertex);
    } else {
      progress.error(vertex, outcome.error().message);
    }
    return outcome;
  }
};

// buildx's --metadata-file keys.
json build_metadata(const executor::BuildResult& result, const std::vector<oci::Reference>& tags,
                    const std::optional<push::PushedImage>& pushed) {
  std::string names;
  for (const oci::Reference& tag : tags) names += (names.empty() ? "" : ",") + tag.str();
  const Digest manifest = pushed ? pushed->manifest_digest : result.manifest_digest;
  json metadata = {
      {"containerimage.config.digest", result.config_digest.str()},
      {"containerimage.descriptor",
       {{"mediaType", pushed ? pushed->media_type : result.manifest.media_type},
        {"digest", manifest.str()},
        {"size", pushed ? pushed->manifest_size : 0}}},
      {"containerimage.digest", manifest.str()},
  };
  if (!pushed) metadata["containerimage.descriptor"].erase("size");
  if (!names.empty()) metadata["image.name"] = names;
  return metadata;
}

// ---- the command ------------------------------------------------------------------------------------

// Everything the flags say, checked before any work starts.
struct BuildPlanInputs {
  std::vector<oci::Reference> tags;
  std::map<std::string, std::string> build_args;
  std::map<std::string, std::string> labels;
  std::vector<executor::Secret> secrets;
  std::vector<executor::SshAgent> ssh_agents;
  std::vector<OutputSpec> outputs;
  executor::ProgressMode progress_mode = executor::ProgressMode::auto_;
  std::vector<CacheSpec> cache_from;
  std::vector<CacheSpec> cache_to;
  planner::RunSandbox run_sandbox;  // --shm-size, --ulimit
};

Result<BuildPlanInputs> check_flags(const BuildArgs& args) {
  BuildPlanInputs inputs;
  for (const std::string& text : args.tags) {
    auto tag = oci::Reference::parse_tag(text);
    if (!tag) return Error{"invalid tag \"" + text + "\": " + tag.error().message};
    inputs.tags.push_back(std::move(tag).value());
  }
  auto build_args = parse_pairs(args.build_args, "--build-arg", true);
  if (!build_args) return build_args.error();
  inputs.build_args = std::move(build_args).value();
  auto labels = parse_pairs(args.labels, "--label", false);
  if (!labels) return labels.error();
  inputs.labels = std::move(labels).value();
  if (auto r = check_platforms(args.platforms); !r) return r.error();
  auto secrets = parse_secrets(args.secrets);
  if (!secrets) return secrets.error();
  inputs.secrets = std::move(secrets).value();
  auto agents = parse_ssh(args.ssh);
  if (!agents) return agents.error();
  inputs.ssh_agents = std::move(agents).value();
  for (const std::string& text : args.outputs) {
    auto output = parse_output(text, isatty(STDOUT_FILENO) == 1);
    if (!output) return output.error();
    inputs.outputs.push_back(std::move(output).value());
  }
  if (inputs.outputs.empty()) inputs.outputs.push_back(OutputSpec{});  // the store, with the tags
  if (args.push) {
    bool has_image = false;
    for (OutputSpec& output : inputs.outputs) {
      if (output.kind == OutputSpec::Kind::image) output.push = has_image = true;
    }
    if (!has_image) return Error{"--push needs an image output (it is --output type=image,push=true)"};
  }
  auto mode = executor::parse_progress_mode(args.progress);
  if (!mode) return mode.error();
  inputs.progress_mode = args.quiet ? executor::ProgressMode::quiet : *mode;
  if (args.jobs < 0) return Error{"--jobs must be at least 1"};
  for (const std::string& text : args.cache_from) {
    auto spec = parse_cache_spec(text, /*export_side=*/false);
    if (!spec) return spec.error();
    inputs.cache_from.push_back(std::move(spec).value());
  }
  for (const std::string& text : args.cache_to) {
    auto spec = parse_cache_spec(text, /*export_side=*/true);
    if (!spec) return spec.error();
    inputs.cache_to.push_back(std::move(spec).value());
  }
  auto shm_size = parse_shm_size(args.shm_size);
  if (!shm_size) return shm_size.error();
  inputs.run_sandbox.shm_size = *shm_size;
  for (const std::string& text : args.ulimits) {
    auto ulimit = parse_ulimit(text);
    if (!ulimit) return ulimit.error();
    inputs.run_sandbox.ulimits.push_back(std::move(ulimit).value());
  }
  return inputs;
}

// As buildx: SOURCE_DATE_EPOCH in the environment is the build arg unless one was given.
// The planner validates it and resolves the Dockerfile's default.
std::map<std::string, std::string> with_epoch_from_env(std::map<std::string, std::string> build_args) {
  const char* env = std::getenv("SOURCE_DATE_EPOCH");
  if (env != nullptr && *env != '\0') build_args.emplace("SOURCE_DATE_EPOCH", env);
  return build_args;
}

void print_warning(const std::string& message) { std::fprintf(stderr, "kiln: warning: %s\n", message.c_str()); }

// Ends a failed build as BuildKit does: the failed steps' last lines, then the error.
int build_failed(executor::Progress& progress, const std::string& message) {
  progress.finish();
  const std::string report = progress.failed_step_report();
  if (!report.empty()) std::fprintf(stderr, "%s", report.c_str());
  return fail(message);
}

int run_build(const GlobalOptions& global, const BuildArgs& args) {
  auto flags = check_flags(args);
  if (!flags) return fail(flags.error().message);
  auto files = open_output_files(flags->outputs, args.iidfile, args.metadata_file);
  if (!files) return fail(files.error().message);
  auto store = open_store(global);
  if (!store) return fail(store.error().message);
  auto scratch = ScratchSpace::make(*store);
  if (!scratch) return fail(scratch.error().message);
  auto input = prepare_input(args, *scratch);
  if (!input) return fail(input.error().message);

  executor::ProgressOptions progress_options = executor::progress_options_for_fd(flags->progress_mode, STDERR_FILENO);
  progress_options.output = [](std::string_view bytes) {
    (void)write_all(STDERR_FILENO, bytes.data(), bytes.size(), "stderr");  // progress never fails a build
  };
  executor::Progress progress(std::move(progress_options));
  std::vector<std::string> warnings;

  const executor::VertexId definition = progress.start("[internal] load build definition from " + input->dockerfile_name);
  auto dockerfile = parser::parse(input->dockerfile_text, input->dockerfile_name);
  // Loading the file worked; as BuildKit, the parse error is the build's, not the vertex's.
  progress.done(definition);
  if (!dockerfile) {
    progress.finish();
    return fail(dockerfile.error().message);
  }
  for (const parser::Warning& warning : dockerfile->warnings) {
    warnings.push_back(parser::location_prefix(input->dockerfile_name, warning.position) + warning.message);
  }

  std::optional<cache::BuildContext> context;
  std::unique_ptr<executor::IgnoreRules> ignore;
  if (input->context_dir) {
    const executor::VertexId vertex = progress.start("[internal] load .dockerignore");
    auto ignore_file = cache::read_ignore_file(*input->context_dir, input->dockerfile_path, input->shown_dir);
    if (!ignore_file) return build_failed(progress, ignore_file.error().message);
    if (*ignore_file) {
      auto rules = parser::DockerIgnore::parse((*ignore_file)->text, (*ignore_file)->name);
      if (!rules) return build_failed(progress, rules.error().message);
      ignore = std::make_unique<executor::IgnoreRules>(std::move(rules).value());
    }
    progress.done(vertex);
    auto opened = cache::BuildContext::open(*input->context_dir);
    if (!opened) return build_failed(progress, opened.error().message);
    context.emplace(std::move(opened).value());
  }

  push::PullOptions pull_options;
  pull_options.registry.insecure_registries = args.insecure_registries;
  StoreImageSource images(*store, progress, pull_options, args.pull);
  planner::PlanOptions plan_options;
  plan_options.build_args = with_epoch_from_env(flags->build_args);
  plan_options.target = args.target;
  plan_options.run_sandbox = flags->run_sandbox;
  plan_options.resolve_base = base_resolver(images);
  auto graph = planner::plan(*dockerfile, plan_options);
  if (!graph) return build_failed(progress, graph.error().message);
  // The plan holds what the build needs: the syntax tree goes before the build starts
  // (200,000 ENV lines: about 200 MB less at the build's peak).
  { const parser::Dockerfile planned = std::move(*dockerfile); }
  for (const std::string& warning : graph->warnings) warnings.push_back(warning);

  executor::BuildOptions options;
  options.store = &*store;
  options.context = context ? &*context : nullptr;
  options.ignore = ignore.get();
  options.images = &images;
  options.progress = &progress;
  options.dockerfile_name = input->dockerfile_name;
  options.jobs = args.jobs > 0 ? args.jobs : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  options.no_cache = args.no_cache;
  for (const std::string& stage : args.no_cache_filter) {
    std::string name = stage;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    options.no_cache_stages.insert(name);
  }
  options.explain_cache = args.explain_cache;
  options.secrets = flags->secrets;
  options.ssh_agents = flags->ssh_agents;
  options.labels = flags->labels;
  push::PushOptions cache_options;
  cache_options.registry.insecure_registries = args.insecure_registries;
  std::vector<std::unique_ptr<executor::RemoteCache>> remote_caches;
  for (const CacheSpec& spec : flags->cache_from) {
    const executor::VertexId vertex = progress.start("[internal] importing cache manifest from " + spec.ref.str());
    auto opened = open_registry_cache(spec, *store, cache_options);
    if (!opened) {
      // BuildKit goes on without a cache it cannot read; so does kiln, and says why.
      progress.log(vertex, opened.error().message + "\n", executor::Stream::stderr_);
      progress.done(vertex);
      continue;
    }
    remote_caches.push_back(std::move(opened).value());
    options.remote_caches.push_back(remote_caches.back().get());
    progress.done(vertex);
  }
  auto result = executor::build(*graph, options);
  if (!result) return build_failed(progress, result.error().message);
  // type=inline: the cache records go into the image before anything names or pushes it.
  if (auto inlined = apply_inline_cache(flags->cache_to, *store, *result); !inlined) {
    return build_failed(progress, inlined.error().message);
  }

  Exporter exporter{*store, progress, *result, *scratch, flags->tags, {}, std::nullopt};
  exporter.push_options.registry.insecure_registries = args.insecure_registries;
  for (std::size_t i = 0; i < flags->outputs.size(); ++i) {
    std::optional<OutputFile>& file = files->outputs[i];
    if (auto exported = exporter.run(flags->outputs[i], file ? &*file : nullptr); !exported) {
      return build_failed(progress, exported.error().message);
    }
  }
  for (const CacheSpec& spec : flags->cache_to) {
    const executor::VertexId vertex = progress.start("exporting cache to " + spec.ref.str());
    if (auto exported = export_registry_cache(spec, *store, *result, cache_options); !exported) {
      progress.error(vertex, exported.error().message);
      return build_failed(progress, exported.error().message);
    }
    progress.done(vertex);
  }
  progress.finish();
  for (const std::string& warning : warnings) print_warning(warning);

  // buildx: the pushed manifest's digest after a push, else the image (config) ID.
  const std::string image_id =
      exporter.pushed ? exporter.pushed->manifest_digest.str() : result->config_digest.str();
  if (files->iidfile) {
    if (auto r = write_and_commit(*files->iidfile, image_id); !r) return fail(r.error().message);
  }
  if (files->metadata_file) {
    const json metadata = build_metadata(*result, flags->tags, exporter.pushed);
    if (auto r = write_and_commit(*files->metadata_file, metadata.dump(2) + "\n"); !r) return fail(r.error().message);
  }
  if (args.quiet) std::printf("%s\n", result->config_digest.str().c_str());
  return 0;
}

}  // namespace

Command add_build_command(CLI::App& app, const GlobalOptions& global) {
  auto args = std::make_shared<BuildArgs>();
  CLI::App* build = app.add_subcommand("build", "Build an image from a Dockerfile");
  build->add_option("context", args->context, "The build context: a directory, a git or http(s) URL, or - (stdin)")
      ->required();
  // Repeatable options take one value per flag: a list would swallow the context.
  build->add_option("-t,--tag", args->tags, "Name the image (name:tag); repeat for several")->allow_extra_args(false);
  build->add_option("-f,--file", args->file, "The Dockerfile (default: CONTEXT/Dockerfile; - reads stdin)");
  build->add_option("--target", args->target, "The stage to build (default: the last)");
  build->add_option("--build-arg", args->build_args, "Set a build-time variable: K=V, or K to take $K")
      ->allow_extra_args(false);
  build->add_flag("--no-cache", args->no_cache, "Do not use the cache");
  build->add_option("--no-cache-filter", args->no_cache_filter, "Do not use the cache for this stage")
      ->allow_extra_args(false);
  build->add_flag("--pull", args->pull, "Always pull the base images");
  build->add_option("--progress", args->progress, "Progress output: auto, tty, plain, rawjson or quiet");
  build->add_flag("-q,--quiet", args->quiet, "Print nothing but the image ID (on stdout)");
  build->add_option("--iidfile", args->iidfile, "Write the image ID to this file");
  build->add_option("--metadata-file", args->metadata_file, "Write the build result's metadata as JSON to this file");
  build->add_option("--label", args->labels, "Set an image label: K=V")->allow_extra_args(false);
  build->add_option("--platform", args->platforms, "The target platform (only the host's)")->allow_extra_args(false);
  build->add_option("--secret", args->secrets, "A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR")
      ->allow_extra_args(false);
  build->add_option("--ssh", args->ssh, "An SSH agent for RUN --mount=type=ssh: default[=SOCKET] or ID=SOCKET")
      ->allow_extra_args(false);
  build->add_option("--jobs", args->jobs, "Stages built at once (default: one per hardware thread)");
  build->add_flag("--explain-cache", args->explain_cache, "Say which input changed on every cache miss");
  build->add_option("--insecure-registry", args->insecure_registries, "Use plain HTTP for this registry")
      ->allow_extra_args(false);
  build->add_option("-o,--output", args->outputs,
                    "Output: type=image[,name=N][,push=true], type=oci|docker,dest=FILE, type=local,dest=DIR, "
                    "type=tar,dest=FILE, or DIR")
      ->allow_extra_args(false);
  build->add_option("--cache-from", args->cache_from,
                    "Read build cache from a registry: type=registry,ref=REF (or just REF); repeatable")
      ->allow_extra_args(false);
  build->add_option("--cache-to", args->cache_to,
                    "Export the build cache to a registry: type=registry,ref=REF[,mode=min|max]")
      ->allow_extra_args(false);
  build->add_flag("--push", args->push, "Push the image to its registry (--output type=image,push=true)");
  build->add_option("--shm-size", args->shm_size, "Size of /dev/shm in RUN steps: bytes, or 128m, 1g (default: 64m)");
  build->add_option("--ulimit", args->ulimits, "A resource limit for RUN steps: name=soft[:hard] (repeat for several)")
      ->allow_extra_args(false);
  return {build, [&global, args] { return run_build(global, *args); }, 1, true};
}

}  // namespace kiln::cli
