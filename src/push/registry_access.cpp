#include "push/registry_access.h"

namespace kiln::push {

Result<std::unique_ptr<RegistryAccess>> RegistryAccess::make(Http* http, const CredentialSource* credentials,
                                                             Authenticator* authenticator) {
  std::unique_ptr<RegistryAccess> access(new RegistryAccess());
  if (http == nullptr) {
    access->own_http_ = std::make_unique<CurlHttp>();
    http = access->own_http_.get();
  }
  access->http_ = http;
  if (authenticator == nullptr) {
    if (credentials == nullptr) {
      auto config = DockerConfig::load();
      if (!config) return config.error();
      access->own_config_ = std::make_unique<DockerConfig>(std::move(*config));
      credentials = access->own_config_.get();
    }
    access->own_authenticator_ = std::make_unique<Authenticator>(*http, *credentials);
    authenticator = access->own_authenticator_.get();
  }
  access->authenticator_ = authenticator;
  return access;
}

}  // namespace kiln::push
