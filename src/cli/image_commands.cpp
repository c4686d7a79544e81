// The commands that move and show images in the local store: pull, images, tag, rmi,
// inspect, save, load, prune.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "cache/containers.h"
#include "cache/store.h"
#include "cli/commands.h"
#include "cli/stored_images.h"
#include "common/remove_tree.h"
#include "oci/image.h"
#include "oci/reference.h"
#include "push/image_archive.h"
#include "push/puller.h"

namespace kiln::cli {
namespace {

using json = nlohmann::ordered_json;

// ---- pull ---------------------------------------------------------------------------

struct PullArgs {
  std::string reference;
  std::string platform;
  std::vector<std::string> insecure_registries;
};

int run_pull(const GlobalOptions& global, const PullArgs& args) {
  auto reference = oci::Reference::parse(args.reference);
  if (!reference.ok()) return fail(reference.error().message);
  oci::Platform platform = oci::Platform::host();
  if (!args.platform.empty()) {
    auto parsed = oci::Platform::parse(args.platform);
    if (!parsed.ok()) return fail(parsed.error().message);
    platform = std::move(parsed).value();
  }
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  push::PullOptions options;
  options.registry.insecure_registries = args.insecure_registries;
  std::printf("Pulling %s for %s\n", reference->str().c_str(), platform.str().c_str());
  std::fflush(stdout);  // before any error on stderr, also when stdout is a pipe
  auto pulled = push::pull(*reference, platform, *store, options);
  if (!pulled.ok()) return fail(pulled.error().message);
  std::printf("Digest: %s\nImage ID: %s\nStored as %s\n", pulled->manifest_digest.str().c_str(),
              pulled->config_digest.str().c_str(), pulled->reference.c_str());
  return 0;
}

// ---- images, inspect ------------------------------------------------------------------

int run_images(const GlobalOptions& global) {
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  auto refs = store->list_refs();
  if (!refs.ok()) return fail(refs.error().message);
  std::printf("%-40s %-16s %-14s %-22s %s\n", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE");
  for (const auto& [name, target] : *refs) {
    if (name.starts_with('@')) continue;  // kiln's own refs, e.g. a container's hold on its image
    auto reference = oci::Reference::parse(name);
    auto image = load_image(*store, target);
    if (!reference.ok() || !image.ok()) continue;  // not an image manifest (e.g. an index ref)
    std::uint64_t size = static_cast<std::uint64_t>(image->manifest.config.size);
    for (const oci::Descriptor& layer : image->manifest.layers) size += static_cast<std::uint64_t>(layer.size);
    const std::string tag = reference->tag.empty() ? "<none>" : reference->tag;
    std::printf("%-40s %-16s %-14s %-22s %s\n", reference->familiar_repository().c_str(), tag.c_str(),
                image->manifest.config.digest.hex().substr(0, 12).c_str(),
                image->config.created.empty() ? "-" : image->config.created.substr(0, 19).c_str(),
                human_size(size).c_str());
  }
  return 0;
}

int run_inspect(const GlobalOptions& global, const std::string& text) {
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  auto found = find_image(*store, text);
  if (!found.ok()) return fail(found.error().message);
  const auto& [reference, image] = *found;
  const json document = {
      {"Reference", reference.str()},
      {"Id", image.manifest.config.digest.str()},
      {"ManifestDigest", image.manifest_digest.str()},
      {"Manifest", json::parse(image.manifest.to_json())},
      {"Config", json::parse(image.config.to_json())},
  };
  std::cout << document.dump(2) << "\n";
  return 0;
}

// ---- tag, rmi, prune ----------------------------------------------------------------

int run_tag(const GlobalOptions& global, const std::string& source, const std::string& target) {
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  auto found = find_image(*store, source);
  if (!found.ok()) return fail(found.error().message);
  auto destination = oci::Reference::parse_tag(target);
  if (!destination.ok()) return fail(destination.error().message);
  if (auto r = store->set_ref(destination->str(), found->second.manifest_digest); !r.ok()) return fail(r.error().message);
  return 0;
}

int report_gc(cache::Store& store) {
  auto stats = store.collect_garbage();
  if (!stats.ok()) return fail(stats.error().message);
  std::printf("Deleted %llu blobs and %llu snapshots, freed %s\n",
              static_cast<unsigned long long>(stats->blobs_removed),
              static_cast<unsigned long long>(stats->snapshots_removed), human_size(stats->bytes_freed).c_str());
  return 0;
}

// Docker's conflict: a container uses the image and `name` is the last name it has.
Result<void> check_image_unused(const GlobalOptions& global, const cache::Store& store, const std::string& name,
                                const oci::Reference& reference, const Digest& target) {
  auto refs = store.list_refs();
  if (!refs) return refs.error();
  for (const auto& [other, other_target] : *refs) {
    if (other_target == target && !other.starts_with('@') && other != reference.str()) return {};  // still named
  }
  auto containers = cache::ContainerStore(global.root).list();
  if (!containers) return containers.error();
  for (const cache::ContainerRecord& container : *containers) {
    if (container.manifest_digest != target.str()) continue;
    const std::string image_id = container.config_digest.substr(container.config_digest.find(':') + 1, 12);
    return Error{"conflict: unable to remove repository reference \"" + name + "\" (must force) - container " +
                 container.short_id() + " is using its referenced image " + image_id};
  }
  return {};
}

int run_rmi(const GlobalOptions& global, const std::vector<std::string>& names, bool force) {
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  for (const std::string& name : names) {
    auto reference = oci::Reference::parse(name);
    if (!reference.ok()) return fail(reference.error().message);
    auto target = store->get_ref(reference->str());
    if (!target.ok()) return fail(target.error().message);
    if (!target->has_value()) return fail("no such image: " + name);
    if (!force) {
      if (auto unused = check_image_unused(global, *store, name, *reference, **target); !unused.ok()) {
        return fail(unused.error().message);
      }
    }
    // A container's own ref (see cache/containers.h) keeps a forced image's blobs alive.
    auto removed = store->delete_ref(reference->str());
    if (!removed.ok()) return fail(removed.error().message);
    if (!*removed) return fail("no such image: " + name);
    std::printf("Untagged: %s\n", reference->familiar().c_str());
  }
  return report_gc(*store);
}

// `--build-cache`: also forget what `kiln build` keeps for later builds (docker builder
// prune): the cache records (their layers then go unless an image has them), the
// --explain-cache records, RUN --mount=type=cache directories and the context hash cache.
Result<void> forget_build_cache(cache::Store& store) {
  auto refs = store.list_refs();
  if (!refs) return refs.error();
  for (const auto& [name, target] : *refs) {
    if (!name.starts_with("@buildcache/") && !name.starts_with("@buildslot/")) continue;
    if (auto deleted = store.delete_ref(name); !deleted) return deleted.error();
  }
  if (auto removed = remove_tree(store.root() / "cache-mounts"); !removed) return removed.error();
  const auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  if (auto forgotten = store.forget_context_file_digests(now.count()); !forgotten) return forgotten.error();
  return {};
}

int run_prune(const GlobalOptions& global, bool build_cache) {
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  if (build_cache) {
    if (auto forgotten = forget_build_cache(*store); !forgotten) return fail(forgotten.error().message);
  }
  return report_gc(*store);
}

// ---- save, load -----------------------------------------------------------------------

int run_save(const GlobalOptions& global, const std::vector<std::string>& names, const std::string& output,
             const std::string& format) {
  if (output == "-" && ::isatty(STDOUT_FILENO) == 1) {
    return fail("cowardly refusing to save to a terminal. Use the -o flag or redirect");  // docker save's words
  }
  auto out = OutputFile::create(output);
  if (!out.ok()) return fail(out.error().message);
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  std::vector<oci::Reference> references;
  for (const std::string& name : names) {
    auto reference = oci::Reference::parse(name);
    if (!reference.ok()) return fail(reference.error().message);
    references.push_back(std::move(reference).value());
  }
  const auto archive_format = format == "oci" ? push::ArchiveFormat::oci : push::ArchiveFormat::docker;
  if (auto r = push::save_archive(*store, references, archive_format, *out); !r.ok()) return fail(r.error().message);
  return 0;
}

int run_load(const GlobalOptions& global, const std::string& input) {
  auto store = open_store(global);
  if (!store.ok()) return fail(store.error().message);
  auto loaded = push::load_archive(*store, input);
  if (!loaded.ok()) return fail(loaded.error().message);
  for (const std::string& name : *loaded) std::printf("Loaded image: %s\n", name.c_str());
  return 0;
}

}  // namespace

std::vector<Command> add_image_commands(CLI::App& app, const GlobalOptions& global) {
  std::vector<Command> commands;

  auto pull_args = std::make_shared<PullArgs>();
  CLI::App* pull = app.add_subcommand("pull", "Pull an image from a registry into the local store");
  pull->add_option("reference", pull_args->reference, "Image reference, e.g. busybox or 127.0.0.1:5000/app:1")
      ->required();
  pull->add_option("--platform", pull_args->platform, "os/arch[/variant] to pull (default: this machine's)");
  pull->add_option("--insecure-registry", pull_args->insecure_registries, "Use plain HTTP for this registry")
      ->allow_extra_args(false);  // one value per flag: a list would swallow the reference
  commands.push_back({pull, [&global, pull_args] { return run_pull(global, *pull_args); }});

  CLI::App* images = app.add_subcommand("images", "List the images in the local store");
  commands.push_back({images, [&global] { return run_images(global); }});

  auto tag_args = std::make_shared<std::pair<std::string, std::string>>();
  CLI::App* tag = app.add_subcommand("tag", "Give a stored image another name");
  tag->add_option("source", tag_args->first, "The image")->required();
  tag->add_option("target", tag_args->second, "The new name")->required();
  commands.push_back({tag, [&global, tag_args] { return run_tag(global, tag_args->first, tag_args->second); }});

  struct RmiArgs {
    std::vector<std::string> names;
    bool force = false;
  };
  auto rmi_args = std::make_shared<RmiArgs>();
  CLI::App* rmi = app.add_subcommand("rmi", "Remove image names, then free what nothing uses");
  rmi->add_option("references", rmi_args->names, "Images to remove")->required();
  rmi->add_flag("-f,--force", rmi_args->force, "Remove the name even when a container uses the image");
  commands.push_back({rmi, [&global, rmi_args] { return run_rmi(global, rmi_args->names, rmi_args->force); }});

  auto inspect_name = std::make_shared<std::string>();
  CLI::App* inspect = app.add_subcommand("inspect", "Print a stored image's manifest and config as JSON");
  inspect->add_option("reference", *inspect_name, "The image")->required();
  commands.push_back({inspect, [&global, inspect_name] { return run_inspect(global, *inspect_name); }});

  struct SaveArgs {
    std::vector<std::string> names;
    std::string output;
    std::string format = "docker";
  };
  auto save_args = std::make_shared<SaveArgs>();
  CLI::App* save = app.add_subcommand("save", "Write images to a tar archive (docker save format, or OCI)");
  save->add_option("references", save_args->names, "Images to save")->required();
  save->add_option("-o,--output", save_args->output, "The archive to write (- for stdout)")->required();
  save->add_option("--format", save_args->format, "docker (default) or oci")
      ->check(CLI::IsMember({"docker", "oci"}));
  commands.push_back(
      {save, [&global, save_args] { return run_save(global, save_args->names, save_args->output, save_args->format); }});

  auto load_input = std::make_shared<std::string>();
  CLI::App* load = app.add_subcommand("load", "Read images from a docker or OCI tar archive");
  load->add_option("-i,--input", *load_input, "The archive to read")->required();
  commands.push_back({load, [&global, load_input] { return run_load(global, *load_input); }});

  CLI::App* prune = app.add_subcommand("prune", "Free blobs and snapshots no image uses");
  auto build_cache = std::make_shared<bool>(false);
  prune->add_flag("--build-cache", *build_cache,
                  "Also drop kiln build's cache (records, cache mounts, context hashes), as docker builder prune");
  commands.push_back({prune, [&global, build_cache] { return run_prune(global, *build_cache); }});
  return commands;
}

}  // namespace kiln::cli
