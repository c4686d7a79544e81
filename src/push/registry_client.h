// The distribution API v2 (OCI distribution spec) for one registry: ping, manifests by
// tag or digest, blobs with streaming verification and resume; and for pushes: blob
// HEAD, cross-repository mount, monolithic and chunked uploads that resume where the
// registry says it stands, manifest PUT. Authentication, retries and redirects happen
// inside; callers see content or a clear Error.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"
#include "common/digest.h"
#include "common/result.h"
#include "push/auth.h"
#include "push/http.h"

namespace kiln::push {

/// When and how long to wait before trying a request again. Retried: connection errors,
/// 408, 429, 500, 502, 503, 504. Plain data.
struct RetryPolicy {
  int max_attempts = 5;  // tries per request including the first (a blob download that
                         // made progress gets its tries back, within RegistryOptions::deadline)
  std::chrono::milliseconds initial_backoff{500};  // doubled after every failure ...
  std::chrono::milliseconds max_backoff{10'000};   // ... up to this; each wait is jittered to 50-100 %
  std::chrono::milliseconds max_retry_after{60'000};  // cap on a server's Retry-After
  /// Waits `delay`; std::this_thread::sleep_for when empty. Tests record instead of waiting.
  std::function<void(std::chrono::milliseconds delay)> sleep;
};

/// How to reach registries. Plain data.
struct RegistryOptions {
  /// Registries (host or host:port, as in references) spoken to over plain HTTP, like
  /// dockerd's --insecure-registry. localhost, 127.0.0.0/8 and ::1 always are.
  std::vector<std::string> insecure_registries;
  RetryPolicy retry;
  /// How long one request may take, every retry and every resumed attempt included: a
  /// server that trickles bytes or stalls again and again is given up on then. A request
  /// moving `n` bytes (a blob) gets `deadline + n / min_bytes_per_second`, so a 1 GiB layer
  /// over a 512 kbit/s link still fits (4.6 h).
  std::chrono::seconds deadline = registry_deadline();
  std::uint64_t min_bytes_per_second = 64u << 10;
};

/// A manifest or index exactly as the registry sent it.
struct ManifestBytes {
  std::string bytes;       // the document; its sha256 is `digest`
  std::string media_type;  // Content-Type, or the document's mediaType when that is missing or generic
  Digest digest;
};

/// An upload session the registry opened for one blob. Plain data.
struct UploadSession {
  std::string location;         // absolute URL of the next request, with the registry's query (its state token)
  std::uint64_t offset = 0;     // bytes of the blob the registry holds
  std::uint64_t min_chunk = 0;  // OCI-Chunk-Min-Length: the smallest PATCH but the last it takes; 0 = any
};

/// What start_upload() got from the registry. Plain data.
struct UploadStart {
  bool mounted = false;   // 201: the mount worked, the blob is in the repository; `session` is unset
  UploadSession session;  // 202: where to upload the bytes
};

/// Reads up to `capacity` bytes of the blob being uploaded, starting at byte `offset`, into
/// `buffer`; returns how many it read (0 only past the end).
using BlobReadAt = std::function<Result<std::size_t>(std::uint64_t offset, char* buffer, std::size_t capacity)>;

/// How upload_blob() sends a blob. Plain data.
struct UploadOptions {
  std::uint64_t monolithic_max = 4u << 20;  // blobs up to this size go in one PUT (kept in memory)
  std::uint64_t chunk_size = 32u << 20;     // larger ones in PATCHes of this size (or the registry's minimum)
  /// Called (from the uploading thread) with how many bytes of the blob the registry has or
  /// is being sent; goes back after a resume from an earlier offset. May be empty.
  std::function<void(std::uint64_t bytes)> progress;
};

/// `https://registry-1.docker.io` for docker.io, `http://<registry>` for loopback and
/// insecure registries, `https://<registry>` otherwise.
std::string registry_base_url(std::string_view registry, const std::vector<std::string>& insecure_registries);

/// The Accept header value of manifest requests: OCI and Docker manifests and indexes.
std::string_view manifest_accept_header();

/// Client for one registry. Thread-safe: parallel downloads share one client. Borrows
/// `http` and `auth`, which must outlive it. Every error message starts with
/// `<registry>/<repository>: ` and names what was asked for; it never contains a
/// credential, a token or a signed URL's query.
class RegistryClient {
 public:
  /// `registry` is a reference's domain: "docker.io", "localhost:5000", "[::1]:5000".
  RegistryClient(std::string registry, Http& http, Authenticator& auth, RegistryOptions options = {});

  /// The registry as given to the constructor.
  const std::string& registry() const { return registry_; }
  /// Where API requests go: see registry_base_url().
  const std::string& base_url() const { return base_url_; }

  /// GET /v2/, authenticating if the registry asks. Errors: unreachable, not a registry,
  /// credentials refused.
  Result<void> ping();

  /// The manifest (or index) `reference` (a tag or a digest) of `repository` ("library/alpine").
  /// A digest reference is verified against the bytes received; for a tag the digest is
  /// computed from them. Errors: 401/403/404 naming registry and repository, a digest
  /// mismatch, a document over 4 MiB, schema 1 manifests.
  Result<ManifestBytes> get_manifest(std::string_view repository, std::string_view reference);

  /// A small blob (an image config) read into memory and checked against `digest`.
  /// Errors: as fetch_blob, or larger than `max_size`.
  Result<std::string> get_blob(std::string_view repository, const Digest& digest, std::uint64_t max_size = 16u << 20);

  /// Downloads blob `digest` of `repository` into `writer` and commits it; returns the
  /// digest. Continues after the `writer.size()` bytes it already holds with
  /// `Range: bytes=N-`; a server that ignores Range (200 instead of 206) is read from the
  /// start with the first N bytes skipped. Transient failures are retried per the policy,
  /// resuming where the last attempt stopped. The bytes are verified by the writer's
  /// commit(): on a mismatch nothing is stored and the error says so. `expected_size`,
  /// when known, stops a server sending more. After an error the writer is spent.
  Result<Digest> fetch_blob(std::string_view repository, const Digest& digest,
                            std::optional<std::uint64_t> expected_size, cache::BlobWriter& writer);

  // ---- pushing: every request asks for `repository:<path>:pull,push` access ----

  /// HEAD of blob `digest` in `repository`: its size when the repository has it, nullopt
  /// when not (404). Errors: 401/403 and other failures, naming registry and repository.
  Result<std::optional<std::uint64_t>> stat_blob(std::string_view repository, const Digest& digest);

  /// Opens an upload in `repository` (POST .../blobs/uploads/). With `mount_from` set (a
  /// repository of this registry known to hold `digest`), asks the registry to mount the
  /// blob from there (`?mount=<digest>&from=<repo>`, with pull access to that repository
  /// too); a registry that cannot, or does not find it there, opens a session instead.
  Result<UploadStart> start_upload(std::string_view repository, const Digest& digest,
                                   std::optional<std::string_view> mount_from = std::nullopt);

  /// Sends blob `digest` (`size` bytes, read with `read`) into `session` and completes it
  /// with `PUT <location>?digest=`: in one PUT when it is at most options.monolithic_max
  /// bytes, else in PATCHes of options.chunk_size with Content-Range. After a dropped
  /// connection, a 5xx or a 429 (honouring Retry-After), asks the registry where the upload
  /// stands (GET on the session: its Range) and goes on from there; when the registry lost
  /// the session, opens a new one (or finds the blob complete). Retries per the policy,
  /// counting only failures without progress. Returns the digest the registry confirmed.
  /// Errors: refusals naming registry and repository, the retry budget spent, a read
  /// error, a registry that stored different bytes.
  Result<Digest> upload_blob(std::string_view repository, const Digest& digest, std::uint64_t size,
                             const BlobReadAt& read, UploadSession session, const UploadOptions& options = {});

  /// Abandons an upload session (DELETE); a session the registry already forgot is fine.
  Result<void> cancel_upload(std::string_view repository, const UploadSession& session);

  /// PUTs manifest (or index) `bytes` of type `media_type` as `reference` (a tag or its
  /// digest) of `repository`; returns its digest. The blobs it names must be there.
  /// Errors: refusals naming registry, repository and the reference; a registry that
  /// reports a different digest.
  Result<Digest> put_manifest(std::string_view repository, std::string_view reference, std::string_view bytes,
                              std::string_view media_type);

 private:
  // Per-attempt facts an Attempt reports back to perform().
  struct AttemptState {
    bool fatal = false;       // the error must not be retried (disk full, hostile server)
    bool progressed = false;  // bytes arrived: the retry budget starts over
    std::chrono::steady_clock::time_point deadline;  // set by perform(): the request's end
  };
  using Attempt = std::function<Result<Response>(const std::optional<std::string>& authorization, AttemptState&)>;

  // Runs `attempt` with authentication for `scopes` (one retry after a 401 with fresh
  // credentials) and, when `retry_transient`, retries transient failures until `deadline`
  // (deadline_for(0) when unset). Returns the last response, whatever its status. Without
  // `retry_transient` a transient failure comes back as it is: uploads decide themselves
  // how to go on. A 401 from another host than the registry's is an error: its challenge
  // must not make kiln hand the registry's credentials to a token realm it names.
  Result<Response> perform(std::string_view repository, const std::vector<std::string>& scopes,
                           const std::string& what, const Attempt& attempt, bool retry_transient = true,
                           std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  // perform() with pull access to `repository`.
  Result<Response> perform(std::string_view repository, const std::string& what, const Attempt& attempt,
                           std::optional<std::chrono::steady_clock::time_point> deadline = std::nullopt);
  // Sends `request` with `authorization` only when it goes to the registry's own origin
  // (an upload Location may name any host: credentials are the registry's alone), and with
  // the attempt's deadline.
  Result<Response> exchange(Request request, const std::optional<std::string>& authorization,
                            const AttemptState& state, const BodySink& sink = {});
  // When a request moving `bytes` that starts now must be over: see RegistryOptions::deadline.
  std::chrono::steady_clock::time_point deadline_for(std::uint64_t bytes) const;
  // The error of a request that used up the `allowed` time; `last` is why its last attempt failed.
  Error out_of_time(std::string_view repository, const std::string& what, std::chrono::steady_clock::duration allowed,
                    const std::string& last);
  // Where `session` stands, by GET on its location; nullopt when the registry forgot it.
  Result<std::optional<UploadSession>> upload_status(std::string_view repository, const UploadSession& session,
                                                     const std::string& what);
  // The session a 202 answer describes (its Location, Range, OCI-Chunk-Min-Length).
  Result<UploadSession> session_from(std::string_view repository, const std::string& what, const Response& response,
                                     std::uint64_t min_chunk);
  void wait(std::chrono::milliseconds delay);
  Error failure(std::string_view repository, const std::string& what, const Response& response);
  Error failure(std::string_view repository, const std::string& what, const std::string& message);
  std::chrono::milliseconds backoff(int failures, const Response* response);
  std::string url(std::string_view repository, std::string_view kind, std::string_view reference) const;

  std::string registry_;
  std::string base_url_;
  std::string origin_;  // url_origin(base_url_): the only origin that gets credentials
  Http& http_;
  Authenticator& auth_;
  RegistryOptions options_;
};

}  // namespace kiln::push
