// Parses arbitrary bytes as a WWW-Authenticate value (push::parse_challenges) and sends
// them as a registry's 401 through the Authenticator (realm checks, the token request
// built from realm, service and scope), once per kind of login. Errors are fine; a crash,
// hang, sanitizer report or a secret in an error message is a bug.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "token_flow.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiln::fuzz::silence_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view header(reinterpret_cast<const char*>(data), size);
  for (const kiln::push::Challenge& challenge : kiln::push::parse_challenges(header)) {
    if (challenge.scheme.empty()) kiln::fuzz::fail("a challenge without a scheme");
  }
  for (const auto login : {kiln::fuzz::Login::anonymous, kiln::fuzz::Login::password, kiln::fuzz::Login::identity_token}) {
    kiln::fuzz::run_unauthorized(header, R"({"token":"t0ken","expires_in":300})", login);
  }
  return 0;
}
