#include "common/digest.h"

#include <openssl/evp.h>

#include <cassert>

namespace kiln {

struct Sha256::Context {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  ~Context() { EVP_MD_CTX_free(md); }
};

Sha256::Sha256() : context_(std::make_unique<Context>()) {
  // Only fails on allocation failure; there is no sensible recovery from that.
  if (context_->md == nullptr || EVP_DigestInit_ex(context_->md, EVP_sha256(), nullptr) != 1) std::abort();
}
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, std::size_t size) {
  assert(context_);
  EVP_DigestUpdate(context_->md, data, size);
  size_ += size;
}

Digest Sha256::finish() {
  assert(context_);
  unsigned char raw[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context_->md, raw, &length);
  context_.reset();
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[raw[i] >> 4];
    hex += kHex[raw[i] & 0xF];
  }
  auto digest = Digest::parse("sha256:" + hex);
  return std::move(digest).value();
}

Result<Digest> Digest::parse(std::string_view text) {
  const auto invalid = [&] { return Error{"invalid digest \"" + std::string(text) + "\""}; };
  const std::size_t colon = text.find(':');
  if (colon == std::string_view::npos) return invalid();
  const std::string_view algorithm = text.substr(0, colon);
  const std::string_view hex = text.substr(colon + 1);
  std::size_t expected = 0;
  if (algorithm == "sha256") expected = 64;
  if (algorithm == "sha512") expected = 128;
  if (expected == 0 || hex.size() != expected) return invalid();
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return invalid();
  }
  return Digest(std::string(algorithm), std::string(hex));
}

Digest Digest::sha256_of(std::string_view data) {
  Sha256 hash;
  hash.update(data);
  return hash.finish();
}

}  // namespace kiln
