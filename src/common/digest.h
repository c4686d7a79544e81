// Content digests (`sha256:<64 hex>`) and the streaming SHA-256 that makes them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.h"

namespace kiln {

/// A validated OCI digest. Only sha256 is produced; sha512 is accepted when
/// parsing (the OCI spec registers both) so foreign manifests can be read.
class Digest {
 public:
  /// Parses `algorithm:hex`. Errors name the offending text: `invalid digest "x"`.
  static Result<Digest> parse(std::string_view text);
  /// The sha256 digest of `data`.
  static Digest sha256_of(std::string_view data);

  const std::string& algorithm() const { return algorithm_; }
  const std::string& hex() const { return hex_; }  // lower case
  std::string str() const { return algorithm_ + ":" + hex_; }

  friend bool operator==(const Digest&, const Digest&) = default;
  friend auto operator<=>(const Digest&, const Digest&) = default;

 private:
  Digest(std::string algorithm, std::string hex) : algorithm_(std::move(algorithm)), hex_(std::move(hex)) {}
  std::string algorithm_;  // "sha256" or "sha512"
  std::string hex_;        // exactly 64 (sha256) or 128 (sha512) lower-case hex digits
};

/// Streaming SHA-256 (OpenSSL EVP, so SHA-NI is used where the CPU has it).
/// Not thread-safe; one per stream. Movable, not copyable.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  /// Total bytes hashed so far.
  std::uint64_t size() const { return size_; }
  /// Ends the stream. Further update() calls are not allowed.
  Digest finish();

 private:
  struct Context;
  std::unique_ptr<Context> context_;
  std::uint64_t size_ = 0;
};

}  // namespace kiln
