// Internal to src/push: the HTTP client and authenticator one pull or push talks through.
#pragma once

#include <memory>

#include "common/result.h"
#include "push/auth.h"
#include "push/http.h"

namespace kiln::push {

/// The caller's Http and Authenticator when given, else this object's own: a CurlHttp, and
/// an Authenticator over `credentials` or, without those, over Docker's config.json.
/// Not movable (the Authenticator points into it); hold it in a unique_ptr.
class RegistryAccess {
 public:
  /// Errors: config.json exists but cannot be read.
  static Result<std::unique_ptr<RegistryAccess>> make(Http* http, const CredentialSource* credentials,
                                                      Authenticator* authenticator);
  RegistryAccess(const RegistryAccess&) = delete;
  RegistryAccess& operator=(const RegistryAccess&) = delete;

  Http& http() { return *http_; }
  Authenticator& authenticator() { return *authenticator_; }

 private:
  RegistryAccess() = default;
  std::unique_ptr<CurlHttp> own_http_;
  std::unique_ptr<DockerConfig> own_config_;
  std::unique_ptr<Authenticator> own_authenticator_;
  Http* http_ = nullptr;                    // the caller's or own_http_
  Authenticator* authenticator_ = nullptr;  // the caller's or own_authenticator_
};

}  // namespace kiln::push
