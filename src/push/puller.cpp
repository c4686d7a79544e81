#include "push/puller.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "common/log.h"
#include "oci/image.h"
#include "oci/media_types.h"
#include "push/registry_access.h"

namespace kiln::push {

namespace {

// Prefixes a message that does not yet name what was pulled.
Error pull_error(const oci::Reference& reference, const std::string& message) {
  return Error{"pull " + reference.str() + ": " + message};
}

// Registry client messages already name registry and repository.
Error client_error(const Error& error) { return Error{"pull " + error.message}; }

std::string available_platforms(const oci::Index& index) {
  std::string out;
  for (const auto& entry : index.manifests) {
    if (!entry.platform || entry.platform->os == "unknown") continue;  // attestations
    out += (out.empty() ? "" : ", ") + entry.platform->str();
  }
  return out.empty() ? "none" : out;
}

// One layer to bring in: its blob and the diffID the config gives it.
struct LayerJob {
  oci::Descriptor descriptor;
  Digest diff_id;
  std::filesystem::path snapshot;  // filled by the worker
};

}  // namespace

Result<PulledImage> pull(const oci::Reference& reference, const oci::Platform& platform, cache::Store& store,
                         const PullOptions& options) {
  auto access = RegistryAccess::make(options.http, options.credentials, options.authenticator);
  if (!access) return pull_error(reference, access.error().message);
  RegistryClient client(reference.domain, (*access)->http(), (*access)->authenticator(), options.registry);
  const std::string& repository = reference.path;

  PulledImage pulled{reference.str(), std::nullopt, Digest::sha256_of(""), Digest::sha256_of(""), {}, {}, {}};

  // Resolve: by digest when the reference has one (the tag is then only a name).
  const std::string wanted = reference.digest ? reference.digest->str() : reference.tag;
  auto top = client.get_manifest(repository, wanted);
  if (!top.ok()) return client_error(top.error());
  ManifestBytes manifest_bytes = std::move(*top);

  // Down through the indexes to the platform's image manifest; each index is stored and
  // linked to the next, so GC keeps the chain.
  std::optional<Digest> parent_index;
  for (int depth = 0; oci::is_index(manifest_bytes.media_type); ++depth) {
    if (depth == oci::kMaxIndexNesting) {
      return pull_error(reference, "indexes nest more than " + std::to_string(oci::kMaxIndexNesting) + " deep");
    }
    auto index = oci::Index::from_json(manifest_bytes.bytes);
    if (!index.ok()) return pull_error(reference, index.error().message);
    const oci::Descriptor* chosen = index->entry_for(platform);
    if (chosen == nullptr) {
      return pull_error(reference, "no image for platform " + platform.str() + " in the index; available: " +
                                       available_platforms(*index));
    }
    auto stored_index = store.put_blob(manifest_bytes.bytes);
    if (!stored_index.ok()) return pull_error(reference, stored_index.error().message);
    if (!pulled.index_digest) pulled.index_digest = *stored_index;
    if (parent_index) {
      if (auto linked = store.add_links(*parent_index, {*stored_index}); !linked.ok()) {
        return pull_error(reference, linked.error().message);
      }
    }
    parent_index = *stored_index;
    const Digest entry_digest = chosen->digest;
    auto linked = store.add_links(*stored_index, {entry_digest});
    if (!linked.ok()) return pull_error(reference, linked.error().message);
    auto entry_bytes = client.get_manifest(repository, entry_digest.str());
    if (!entry_bytes.ok()) return client_error(entry_bytes.error());
    manifest_bytes = std::move(*entry_bytes);
    if (!oci::is_manifest(manifest_bytes.media_type) && !oci::is_index(manifest_bytes.media_type)) {
      return pull_error(reference, "index entry " + entry_digest.str() + " is a " + manifest_bytes.media_type +
                                       ", not an image manifest");
    }
  }

  auto manifest = oci::Manifest::from_json(manifest_bytes.bytes);
  if (!manifest.ok()) return pull_error(reference, manifest.error().message);

  // The config: small, needed before the layers (it has their diffIDs).
  const oci::Descriptor& config_descriptor = manifest->config;
  std::string config_bytes;
  if (store.has_blob(config_descriptor.digest)) {
    auto read = store.read_blob(config_descriptor.digest);
    if (!read.ok()) return pull_error(reference, read.error().message);
    config_bytes = std::move(*read);
  } else {
    auto fetched = client.get_blob(repository, config_descriptor.digest);
    if (!fetched.ok()) return client_error(fetched.error());
    config_bytes = std::move(*fetched);
  }
  auto config = oci::ImageConfig::from_json(config_bytes);
  if (!config.ok()) return pull_error(reference, config.error().message);
  pulled.platform = config->platform();
  if (!platform.matches(pulled.platform)) {
    spdlog::warn("pull {}: the image is for {}, not the requested {}", reference.str(), pulled.platform.str(),
                 platform.str());
  }
  if (config->rootfs.diff_ids.size() != manifest->layers.size()) {
    return pull_error(reference, "the manifest lists " + std::to_string(manifest->layers.size()) +
                                     " layers but the config has " + std::to_string(config->rootfs.diff_ids.size()) +
                                     " diff_ids");
  }

  std::vector<LayerJob> jobs;
  for (std::size_t i = 0; i < manifest->layers.size(); ++i) {
    const oci::Descriptor& layer = manifest->layers[i];
    if (!oci::layer_compression(layer.media_type)) {
      return pull_error(reference, "layer " + layer.digest.str() + " has unsupported media type \"" +
                                       layer.media_type + "\"");
    }
    jobs.push_back({layer, config->rootfs.diff_ids[i], {}});
  }

  // Layers: a few workers take jobs in order; the same blob listed twice is fetched once.
  std::map<Digest, std::size_t> first_job_of;  // blob -> index of the job that fetches it
  std::vector<std::size_t> work;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    if (first_job_of.emplace(jobs[i].descriptor.digest, i).second) work.push_back(i);
  }
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::optional<Error> first_error;
  const auto fail = [&](Error error) {
    std::lock_guard lock(error_mutex);
    if (!first_error) first_error = std::move(error);
    failed = true;
  };
  const auto report = [&](PullProgress::Stage stage, const oci::Descriptor& layer) {
    if (options.progress) options.progress({stage, layer.digest, static_cast<std::uint64_t>(layer.size)});
  };
  // Where the blobs came from, so that a push to another repository of this registry
  // can mount them. A hint: losing it costs an upload later, not correctness.
  const auto remember_source = [&](const Digest& blob) {
    if (auto recorded = store.add_blob_source(blob, reference.domain, repository); !recorded.ok()) {
      spdlog::warn("{}", recorded.error().message);
    }
  };
  const auto bring_in = [&](LayerJob& job) -> Result<void> {
    const oci::Descriptor& layer = job.descriptor;
    if (store.has_blob(layer.digest)) {
      report(PullProgress::Stage::layer_exists, layer);
    } else {
      const auto expected_size = static_cast<std::uint64_t>(layer.size);
      for (int attempt = 0;; ++attempt) {
        auto writer = store.begin_blob(layer.digest, expected_size);
        if (!writer.ok()) return Error{"pull " + reference.repository() + ": layer " + layer.digest.str() + ": " +
                                       writer.error().message};
        const bool resumed = writer->size() > 0;
        auto fetched = client.fetch_blob(repository, layer.digest, expected_size, *writer);
        if (fetched.ok()) break;
        // Bytes kept from an earlier run may be what is wrong: the failed commit discarded
        // them, so one more try starts from scratch.
        if (!resumed || attempt > 0) return client_error(fetched.error());
        spdlog::info("{}; downloading it again from the start", fetched.error().message);
      }
      report(PullProgress::Stage::layer_downloaded, layer);
    }
    remember_source(layer.digest);
    auto snapshot = store.snapshot(job.diff_id, layer.digest);
    if (!snapshot.ok()) {
      return Error{"pull " + reference.repository() + ": layer " + layer.digest.str() + ": " + snapshot.error().message};
    }
    job.snapshot = std::move(*snapshot);
    report(PullProgress::Stage::layer_extracted, layer);
    return {};
  };
  const auto worker = [&] {
    while (!failed) {
      const std::size_t at = next++;
      if (at >= work.size()) return;
      auto done = bring_in(jobs[work[at]]);
      if (!done.ok()) fail(done.error());
    }
  };
  const std::size_t thread_count =
      std::min<std::size_t>(static_cast<std::size_t>(std::max(1, options.parallel_downloads)), work.size());
  std::vector<std::thread> threads;
  try {
    for (std::size_t i = 1; i < thread_count; ++i) threads.emplace_back(worker);
  } catch (const std::system_error& e) {
    fail(pull_error(reference, std::string("cannot start a download thread: ") + e.what()));
  }
  worker();  // this thread is one of the workers
  for (auto& thread : threads) thread.join();
  if (first_error) return *first_error;
  for (auto& job : jobs) {
    if (job.snapshot.empty()) job.snapshot = jobs[first_job_of.at(job.descriptor.digest)].snapshot;
  }

  // Documents last, so that a ref only ever points at an image whose parts are all here.
  auto stored_config = store.put_blob(config_bytes);
  if (!stored_config.ok()) return pull_error(reference, stored_config.error().message);
  auto stored_manifest = store.put_blob(manifest_bytes.bytes);
  if (!stored_manifest.ok()) return pull_error(reference, stored_manifest.error().message);
  pulled.manifest_digest = *stored_manifest;
  pulled.config_digest = *stored_config;
  remember_source(pulled.config_digest);
  std::vector<Digest> children{*stored_config};
  for (const auto& job : jobs) {
    children.push_back(job.descriptor.digest);
    pulled.layers.push_back(job.descriptor.digest);
    pulled.snapshots.push_back(job.snapshot);
  }
  auto linked = store.add_links(pulled.manifest_digest, children);
  if (!linked.ok()) return pull_error(reference, linked.error().message);

  auto ref_set = store.set_ref(pulled.reference, pulled.manifest_digest);
  if (!ref_set.ok()) return pull_error(reference, ref_set.error().message);
  if (reference.digest && !reference.tag.empty()) {
    auto digest_ref = store.set_ref(reference.repository() + "@" + reference.digest->str(), pulled.manifest_digest);
    if (!digest_ref.ok()) return pull_error(reference, digest_ref.error().message);
  }
  return pulled;
}

}  // namespace kiln::push
