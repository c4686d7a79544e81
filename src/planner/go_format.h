// Go's fmt verbs that BuildKit uses to write history entries (`CMD %q`,
// `VOLUME %v`, `HEALTHCHECK %+v`), so kiln's `created_by` texts match byte for
// byte. Internal to the planner.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::planner {

/// Go's strconv.Quote for valid UTF-8: `"a\"b\n"`; control bytes as \xNN.
std::string go_quote(std::string_view text);

/// `%q` of a []string: `["a" "b"]`; `[]` when empty.
std::string go_quoted_list(const std::vector<std::string>& items);

/// `%v` of a []string: `[a b]`.
std::string go_list(const std::vector<std::string>& items);

/// time.Duration.String(): `0s`, `1.5s`, `1m30s`, `2h0m0s`, `500ms`, `1µs`, `3ns`.
std::string go_duration(int64_t nanoseconds);

}  // namespace kiln::planner
