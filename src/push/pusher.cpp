#include "push/pusher.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "common/fd.h"
#include "common/log.h"
#include "oci/image.h"
#include "push/recompress.h"
#include "push/registry_access.h"

namespace kiln::push {

namespace {

constexpr std::size_t kMaxMountCandidates = 3;  // as Docker: a few tries, then upload

// One blob the manifest needs, as it will be pushed.
struct Blob {
  Digest digest;
  std::uint64_t size = 0;
};

// The destinations in one repository of one registry, in the order given.
struct RepositoryTarget {
  std::string repository;                   // the path: "team/app"
  std::vector<oci::Reference> references;   // each pushed as its tag (or digest)
};

struct RegistryTarget {
  std::string registry;
  std::vector<RepositoryTarget> repositories;
};

std::vector<RegistryTarget> group_destinations(const std::vector<oci::Reference>& destinations) {
  std::vector<RegistryTarget> registries;
  for (const oci::Reference& destination : destinations) {
    auto registry = std::find_if(registries.begin(), registries.end(),
                                 [&](const RegistryTarget& r) { return r.registry == destination.domain; });
    if (registry == registries.end()) registry = registries.insert(registries.end(), {destination.domain, {}});
    auto repository = std::find_if(registry->repositories.begin(), registry->repositories.end(),
                                   [&](const RepositoryTarget& r) { return r.repository == destination.path; });
    if (repository == registry->repositories.end()) {
      repository = registry->repositories.insert(registry->repositories.end(), {destination.path, {}});
    }
    repository->references.push_back(destination);
  }
  return registries;
}

std::optional<cache::LayerCompression> to_cache(std::optional<oci::Compression> compression) {
  if (!compression) return std::nullopt;
  switch (*compression) {
    case oci::Compression::none: return cache::LayerCompression::none;
    case oci::Compression::gzip: return cache::LayerCompression::gzip;
    case oci::Compression::zstd: return cache::LayerCompression::zstd;
  }
  return std::nullopt;
}

oci::Compression to_oci(cache::LayerCompression compression) {
  switch (compression) {
    case cache::LayerCompression::none: return oci::Compression::none;
    case cache::LayerCompression::gzip: return oci::Compression::gzip;
    case cache::LayerCompression::zstd: return oci::Compression::zstd;
  }
  return oci::Compression::none;
}

// The manifest as it will be pushed, and the blobs it needs.
struct PushPlan {
  std::string manifest_bytes;
  std::string media_type;
  Digest manifest_digest = Digest::sha256_of("");
  Digest config_digest = Digest::sha256_of("");
  std::vector<Blob> blobs;  // config first, then layers; each digest once
};

// Everything the blob workers share.
class PushRun {
 public:
  PushRun(cache::Store& store, const PushOptions& options) : store_(store), options_(options) {}

  void report(PushProgress progress) const {
    if (options_.progress) options_.progress(progress);
  }

  // Reads the stored image, recompresses layers as asked, and writes the manifest to push.
  Result<PushPlan> plan(const Digest& manifest_digest) {
    auto stored = store_.read_blob(manifest_digest);
    if (!stored) return stored.error();
    {
      auto probe = oci::Index::from_json(*stored);
      if (probe.ok()) return Error{"image " + manifest_digest.str() + " is an index; only image manifests can be pushed"};
    }
    auto manifest = oci::Manifest::from_json(*stored);
    if (!manifest) return Error{"image " + manifest_digest.str() + ": " + manifest.error().message};
    const oci::MediaTypeFlavor stored_flavor =
        manifest->media_type == oci::kDockerManifest ? oci::MediaTypeFlavor::docker : oci::MediaTypeFlavor::oci;
    const oci::MediaTypeFlavor flavor = options_.format.value_or(stored_flavor);
    bool rewritten = flavor != stored_flavor;

    std::optional<oci::ImageConfig> config;  // read only when a layer needs converting
    PushPlan plan;
    plan.config_digest = manifest->config.digest;
    plan.blobs.push_back({manifest->config.digest, static_cast<std::uint64_t>(manifest->config.size)});
    for (std::size_t i = 0; i < manifest->layers.size(); ++i) {
      oci::Descriptor& layer = manifest->layers[i];
      const auto stored_compression = to_cache(oci::layer_compression(layer.media_type));
      std::optional<cache::LayerCompression> wanted = options_.compression;
      if (!wanted && stored_compression == cache::LayerCompression::none) wanted = cache::LayerCompression::gzip;
      if (stored_compression && wanted && *wanted != *stored_compression) {
        if (!config) {
          auto config_bytes = store_.read_blob(manifest->config.digest);
          if (!config_bytes) return config_bytes.error();
          auto parsed = oci::ImageConfig::from_json(*config_bytes);
          if (!parsed) return parsed.error();
          if (parsed->rootfs.diff_ids.size() != manifest->layers.size()) {
            return Error{"the manifest lists " + std::to_string(manifest->layers.size()) +
                         " layers but the config has " + std::to_string(parsed->rootfs.diff_ids.size()) + " diff_ids"};
          }
          config = std::move(parsed).value();
        }
        if (!store_.has_blob(layer.digest)) return Error{"layer " + layer.digest.str() + " is not in the store"};
        auto earlier = store_.layer_variant(layer.digest, *wanted);
        if (!earlier) return earlier.error();
        if (!earlier->has_value()) {
          report({PushProgress::Stage::compressing, layer.digest, static_cast<std::uint64_t>(layer.size), 0, "", "", ""});
        }
        const int threads = options_.compression_threads > 0
                                ? options_.compression_threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
        auto variant = layer_in_compression(store_, layer.digest, config->rootfs.diff_ids[i], *wanted, threads);
        if (!variant) return variant.error();
        report({PushProgress::Stage::compressed, variant->digest, variant->size, 0, "", layer.digest.str(), ""});
        layer.digest = variant->digest;
        layer.size = static_cast<std::int64_t>(variant->size);
        layer.media_type = std::string(oci::layer_media_type(to_oci(*wanted), flavor));
        rewritten = true;
      }
      const bool listed = std::any_of(plan.blobs.begin(), plan.blobs.end(),
                                      [&](const Blob& blob) { return blob.digest == layer.digest; });
      if (!listed) plan.blobs.push_back({layer.digest, static_cast<std::uint64_t>(layer.size)});
    }
    for (const Blob& blob : plan.blobs) {
      if (!store_.has_blob(blob.digest)) return Error{"blob " + blob.digest.str() + " is not in the store"};
    }
    // Unchanged, the stored bytes go as they are: the image keeps its digest.
    plan.manifest_bytes = rewritten ? manifest->to_json(flavor) : std::move(stored).value();
    plan.media_type = std::string(flavor == oci::MediaTypeFlavor::docker ? oci::kDockerManifest : oci::kOciManifest);
    plan.manifest_digest = Digest::sha256_of(plan.manifest_bytes);
    return plan;
  }

  // Makes sure `repository` of the client's registry has `blob`: HEAD, mount, or upload.
  Result<void> push_blob(RegistryClient& client, const std::string& repository, const Blob& blob) {
    const std::string where = client.registry() + "/" + repository;
    auto present = client.stat_blob(repository, blob.digest);
    if (!present) return present.error();
    if (present->has_value()) {
      report({PushProgress::Stage::exists, blob.digest, blob.size, 0, where, "", ""});
      remember(client.registry(), repository, blob.digest);
      return {};
    }

    std::optional<UploadSession> session;
    const std::vector<std::string> candidates = mount_candidates(client.registry(), repository, blob.digest);
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      auto start = client.start_upload(repository, blob.digest, candidates[i]);
      if (!start) {
        // A source we may not read (or that is gone): not an error of the push.
        spdlog::debug("{}", start.error().message);
        continue;
      }
      if (start->mounted) {
        report({PushProgress::Stage::mounted, blob.digest, blob.size, 0, where, candidates[i], ""});
        remember(client.registry(), repository, blob.digest);
        return {};
      }
      if (i + 1 < candidates.size()) {
        if (auto cancelled = client.cancel_upload(repository, start->session); !cancelled) {
          spdlog::debug("{}", cancelled.error().message);
        }
      } else {
        session = std::move(start->session);
      }
    }
    if (!session) {
      auto start = client.start_upload(repository, blob.digest);
      if (!start) return start.error();
      session = std::move(start->session);
    }

    const std::filesystem::path path = store_.blob_path(blob.digest);
    const int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0) return sys_error("open", path.string());
    const UniqueFd file(raw);
    const BlobReadAt read = [&](std::uint64_t offset, char* buffer, std::size_t capacity) -> Result<std::size_t> {
      for (;;) {
        const ssize_t n = ::pread(file.get(), buffer, capacity, static_cast<off_t>(offset));
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno != EINTR) return sys_error("read", path.string());
      }
    };
    UploadOptions upload = options_.upload;
    upload.progress = [&](std::uint64_t bytes) {
      report({PushProgress::Stage::uploading, blob.digest, blob.size, bytes, where, "", ""});
    };
    auto uploaded = client.upload_blob(repository, blob.digest, blob.size, read, std::move(*session), upload);
    if (!uploaded) return uploaded.error();
    report({PushProgress::Stage::uploaded, blob.digest, blob.size, blob.size, where, "", ""});
    remember(client.registry(), repository, blob.digest);
    return {};
  }

  // Pushes every blob of `plan` to `repository`, `parallel` at a time.
  Result<void> push_blobs(RegistryClient& client, const std::string& repository, const PushPlan& plan) {
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::optional<Error> first_error;
    const auto worker = [&] {
      while (!failed) {
        const std::size_t at = next++;
        if (at >= plan.blobs.size()) return;
        auto pushed = push_blob(client, repository, plan.blobs[at]);
        if (!pushed) {
          std::lock_guard lock(error_mutex);
          if (!first_error) first_error = pushed.error();
          failed = true;
        }
      }
    };
    const std::size_t count =
        std::min<std::size_t>(static_cast<std::size_t>(std::max(1, options_.parallel_uploads)), plan.blobs.size());
    std::vector<std::thread> threads;
    try {
      for (std::size_t i = 1; i < count; ++i) threads.emplace_back(worker);
    } catch (const std::system_error& e) {
      std::lock_guard lock(error_mutex);
      first_error = Error{std::string("cannot start an upload thread: ") + e.what()};
      failed = true;
    }
    worker();  // this thread is one of the workers
    for (auto& thread : threads) thread.join();
    if (first_error) return *first_error;
    return {};
  }

 private:
  // Repositories of `registry` other than `repository` that may hold `digest`: those this
  // push filled first (surely there), then the store's records, newest first.
  std::vector<std::string> mount_candidates(const std::string& registry, const std::string& repository,
                                            const Digest& digest) {
    std::vector<std::string> candidates;
    const auto add = [&](const std::string& from) {
      if (from != repository && candidates.size() < kMaxMountCandidates &&
          std::find(candidates.begin(), candidates.end(), from) == candidates.end()) {
        candidates.push_back(from);
      }
    };
    {
      std::lock_guard lock(mutex_);
      if (auto it = filled_.find({registry, digest}); it != filled_.end()) {
        for (const auto& from : it->second) add(from);
      }
    }
    auto sources = store_.blob_sources(digest);
    if (!sources) {
      spdlog::warn("{}", sources.error().message);
      return candidates;
    }
    for (const auto& source : *sources) {
      if (source.registry == registry) add(source.repository);
    }
    return candidates;
  }

  void remember(const std::string& registry, const std::string& repository, const Digest& digest) {
    {
      std::lock_guard lock(mutex_);
      auto& repositories = filled_[{registry, digest}];
      if (std::find(repositories.begin(), repositories.end(), repository) == repositories.end()) {
        repositories.push_back(repository);
      }
    }
    // A hint for later pushes: losing it costs an upload, not correctness.
    if (auto recorded = store_.add_blob_source(digest, registry, repository); !recorded) {
      spdlog::warn("{}", recorded.error().message);
    }
  }

  cache::Store& store_;
  const PushOptions& options_;
  std::mutex mutex_;  // guards filled_
  std::map<std::pair<std::string, Digest>, std::vector<std::string>> filled_;  // (registry, blob) -> repositories, in push order
};

}  // namespace

Result<PushedImage> push_image(cache::Store& store, const Digest& manifest_digest,
                               const std::vector<oci::Reference>& destinations, const PushOptions& options) {
  if (destinations.empty()) return Error{"push: no destination"};
  const auto push_error = [](const oci::Reference& where, const std::string& message) {
    return Error{"push " + where.repository() + ": " + message};
  };

  PushRun run(store, options);
  auto plan = run.plan(manifest_digest);
  if (!plan) return push_error(destinations.front(), plan.error().message);
  for (const oci::Reference& destination : destinations) {
    if (destination.digest && *destination.digest != plan->manifest_digest) {
      return push_error(destination, "the destination names digest " + destination.digest->str() +
                                         " but the manifest to push is " + plan->manifest_digest.str());
    }
  }

  auto access = RegistryAccess::make(options.http, options.credentials, options.authenticator);
  if (!access) return push_error(destinations.front(), access.error().message);

  PushedImage pushed{plan->manifest_digest, plan->media_type, plan->manifest_bytes.size(), plan->config_digest, {}};
  for (const RegistryTarget& registry : group_destinations(destinations)) {
    RegistryClient client(registry.registry, (*access)->http(), (*access)->authenticator(), options.registry);
    for (const RepositoryTarget& target : registry.repositories) {
      if (auto blobs = run.push_blobs(client, target.repository, *plan); !blobs) {
        return Error{"push " + blobs.error().message};
      }
      // The manifest last: a registry accepts it only once its blobs are there.
      for (const oci::Reference& reference : target.references) {
        const std::string name = reference.tag.empty() ? plan->manifest_digest.str() : reference.tag;
        auto put = client.put_manifest(target.repository, name, plan->manifest_bytes, plan->media_type);
        if (!put) return Error{"push " + put.error().message};
        run.report({PushProgress::Stage::manifest, plan->manifest_digest, plan->manifest_bytes.size(), 0,
                    registry.registry + "/" + target.repository, "", reference.str()});
        pushed.references.push_back(reference.str());
      }
    }
  }
  return pushed;
}

}  // namespace kiln::push
