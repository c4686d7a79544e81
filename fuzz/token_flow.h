// The registry side of a Bearer login, scripted: a 401 whose WWW-Authenticate is fuzzed, or
// a token server whose answer is, runs through the real Authenticator over the tests'
// FakeHttp (every request answered 200 with the given body). Shared by the challenge and
// the JSON targets so both reach the token flow the same way.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_support.h"
#include "push/auth.h"
#include "push/fake_http.h"

namespace kiln::fuzz {

/// How the scripted registry's user logged in.
enum class Login { anonymous, password, identity_token };

/// A secret the fuzzer has no way to produce (nothing compares the input against it).
inline constexpr std::string_view kSecret = "kiln-fuzz-Secret-7f3a9c";

/// Sends a 401 carrying `challenge` for registry.test, with the token server answering
/// `token_answer`, then asks for the next request's Authorization. Aborts when an error
/// message shows the login's secret (auth.h: never in an error).
inline void run_unauthorized(std::string_view challenge, std::string token_answer, Login login) {
  push::StaticCredentials credentials;
  if (login == Login::password) credentials.set("registry.test", {"user", std::string(kSecret), ""});
  if (login == Login::identity_token) credentials.set("registry.test", {"", "", std::string(kSecret)});
  push::testing::FakeHttp http([&](const push::Request&) { return push::testing::FakeReply::with(200, token_answer); });
  push::Authenticator authenticator(http, credentials);

  push::Headers headers;
  headers.add("WWW-Authenticate", std::string(challenge));
  const std::vector<std::string> scopes{"repository:app:pull"};
  const bool secret_in_input = challenge.find(kSecret) != std::string_view::npos;
  const auto check = [&](const Error& error) {
    if (!secret_in_input && error.message.find(kSecret) != std::string::npos) fail("secret in error: " + error.message);
  };
  if (auto retry = authenticator.on_unauthorized("registry.test", scopes, headers, std::nullopt); !retry.ok()) {
    check(retry.error());
  }
  if (auto authorization = authenticator.authorization("registry.test", scopes); !authorization.ok()) {
    check(authorization.error());
  }
  (void)authenticator.redact(token_answer);
}

}  // namespace kiln::fuzz
