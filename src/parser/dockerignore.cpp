// `.dockerignore` parsing and matching. Each rule below names the Docker code
// whose behaviour it reproduces: ignorefile.ReadAll (reading the file),
// patternmatcher.New (cleaning and validating each pattern, the validation
// being Go's filepath.Match syntax), Pattern.compile/match (the four kinds of
// patterns and the regular expression a wildcard pattern becomes) and
// MatchesUsingParentResults as BuildKit's context walker chains it.
//
// A wildcard pattern is matched by a small NFA over its elements, simulated on
// a bit set of states: O(path length x pattern length), never backtracking.
#include "parser/dockerignore.h"
#include "parser/text.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>

namespace kiln::parser {
namespace {

// ---- UTF-8 and Go's string helpers --------------------------------------------

// Invalid UTF-8 decodes as U+FFFD with size 1, as Go's utf8.DecodeRune does
// (which is also what Go's regexp and text/scanner use).
using text::Rune;
using text::trim_space;
constexpr char32_t kRuneError = 0xFFFD;

Rune decode_rune(std::string_view s, std::size_t pos) { return text::decode_rune(s.substr(pos)); }

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// Go's path.Clean (filepath.Clean on Unix): collapse `//`, drop `.` elements,
// resolve `..` lexically (never above the root of a rooted path), drop a
// trailing `/`; an empty result is ".".
std::string clean_path(std::string_view p) {
  if (p.empty()) return ".";
  const bool rooted = p[0] == '/';
  const std::size_t n = p.size();
  std::string out;
  out.reserve(n);
  std::size_t r = 0, dotdot = 0;
  if (rooted) {
    out += '/';
    r = 1;
    dotdot = 1;
  }
  while (r < n) {
    if (p[r] == '/') {
      ++r;
    } else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
      ++r;
    } else if (p[r] == '.' && p[r + 1] == '.' && (r + 2 == n || p[r + 2] == '/')) {
      r += 2;
      if (out.size() > dotdot) {
        std::size_t w = out.size() - 1;
        while (w > dotdot && out[w] != '/') --w;
        out.resize(w);
      } else if (!rooted) {
        if (!out.empty()) out += '/';
        out += "..";
        dotdot = out.size();
      }
    } else {
      if ((rooted && out.size() != 1) || (!rooted && !out.empty())) out += '/';
      for (; r < n && p[r] != '/'; ++r) out += p[r];
    }
  }
  if (out.empty()) return ".";
  return out;
}

std::uint32_t count_slashes(std::string_view s) {
  return static_cast<std::uint32_t>(std::count(s.begin(), s.end(), '/'));
}

// True if one of `a` and `b + "/"` is a prefix of the other.
bool prefix_compatible(std::string_view a, std::string_view b) {
  const std::size_t n = std::min(a.size(), b.size());
  if (a.compare(0, n, b.substr(0, n)) != 0) return false;
  return a.size() <= b.size() || a[b.size()] == '/';
}

// ---- compiled patterns ----------------------------------------------------------

// The elements of a wildcard pattern, i.e. of the regular expression
// patternmatcher builds from it.
enum class Op : std::uint8_t {
  kLit,       // one literal code point
  kAny,       // `?`   -> [^/]
  kClass,     // `[...]`
  kStar,      // `*`   -> [^/]*
  kOptSkip,   // start of `**` followed by more pattern -> (.*/)? ; epsilon only
  kDLoop,     // the `.*/` loop of that group (Go's `.` excludes '\n')
  kDStarEnd,  // `**` at the end -> .*
  kAnchor,    // a bare `^`, which the regexp reads as "start of text"
};

// How often a kLit/kAny/kClass element occurs: once, or, from a `{n,m}`
// repetition in the pattern, optionally (x?) or any number of times (x*).
enum class Rep : std::uint8_t { kOnce, kOptional, kLoop };

struct Range {
  char32_t lo, hi;
};

struct Token {
  Op op;
  Rep rep = Rep::kOnce;
  bool negated = false;     // kClass
  char32_t rune = 0;        // kLit
  std::uint32_t first = 0;  // kClass: ranges [first, last) in Rule::ranges
  std::uint32_t last = 0;
};

// One branch of a top-level `|` in the regexp. Go's regexp reads `^A|B|C$` as
// `(^A)|(B)|(C$)` and patternmatcher calls MatchString, which searches: only
// the first branch is tied to the start of the path, only the last to its end.
struct Alt {
  std::uint32_t begin = 0, end = 0;  // tokens [begin, end)
  bool anchored_start = false, anchored_end = false;
};

constexpr std::uint32_t kUnbounded = std::numeric_limits<std::uint32_t>::max();

// Limit on the elements of one pattern once `{n,m}` repetitions are expanded
// (Go's regexp has a similar size limit, at a much larger size).
constexpr std::size_t kMaxTokens = 1 << 16;

}  // namespace

struct detail::IgnoreRule {
  // patternmatcher's matchType: exact (no wildcard), prefix (literal + `**` at
  // the end), suffix (`**` at the start + literal) or a regular expression.
  enum class Kind : std::uint8_t { kExact, kPrefix, kSuffix, kGlob };

  Kind kind = Kind::kExact;
  bool exception = false;
  std::string text;  // kExact: the pattern; kPrefix: prefix; kSuffix: suffix
  std::vector<Token> tokens;  // kGlob
  std::vector<Range> ranges;  // kGlob: members of all classes
  std::vector<Alt> alts;      // kGlob: at least one
  // kGlob with one branch anchored at both ends: every match starts with
  // lit_prefix and ends with lit_suffix; `literal` means the tokens are all
  // plain literals (so a match equals lit_prefix).
  std::string lit_prefix, lit_suffix;
  bool literal = false;
  // Number of '/' a matching path can contain.
  std::uint32_t min_slashes = 0, max_slashes = kUnbounded;
};

namespace {

using Rule = detail::IgnoreRule;

// ---- compiling ------------------------------------------------------------------

// Parses the class starting at p[pos] == '[' by Go's filepath.Match rules (its
// getEsc): members are runes, `\` escapes the next one, `lo-hi` is a range, a
// leading `^` negates, `]` closes once there is a member. Also rejects what
// Go's regexp would refuse at match time (a reversed range).
Result<std::size_t> compile_class(std::string_view p, std::size_t pos, Rule& rule, Token& tok) {
  const auto unterminated = [] { return Error{"unterminated character class"}; };
  ++pos;
  if (pos < p.size() && p[pos] == '^') {
    tok.negated = true;
    ++pos;
  }
  tok.first = static_cast<std::uint32_t>(rule.ranges.size());
  // One member: Go's getEsc.
  const auto member = [&](bool after_dash) -> Result<char32_t> {
    if (pos >= p.size()) return unterminated();
    if (p[pos] == '-') return Error{"unescaped '-' in character class (write \\- for a literal '-')"};
    if (p[pos] == ']') {
      return Error{after_dash ? "range without an upper bound (write \\- for a literal '-')"
                              : "empty character class"};
    }
    if (p[pos] == '\\') {
      ++pos;
      if (pos >= p.size()) return unterminated();
    }
    const Rune r = decode_rune(p, pos);
    if (!r.valid) return Error{"invalid UTF-8 in character class"};
    pos += r.size;
    if (pos >= p.size()) return unterminated();
    return r.value;
  };
  for (std::size_t count = 0;; ++count) {
    if (pos < p.size() && p[pos] == ']' && count > 0) {
      ++pos;
      break;
    }
    const std::size_t member_start = pos;
    auto lo = member(false);
    if (!lo.ok()) return lo.error();
    char32_t hi = lo.value();
    if (p[pos] == '-') {
      ++pos;
      auto upper = member(true);
      if (!upper.ok()) return upper.error();
      hi = upper.value();
      if (hi < lo.value()) {
        return Error{"invalid character class range \"" +
                     std::string(p.substr(member_start, pos - member_start)) + "\""};
      }
    }
    rule.ranges.push_back({lo.value(), hi});
  }
  tok.last = static_cast<std::uint32_t>(rule.ranges.size());
  return pos;
}

// Go regexp's parseRepeat on `s` (starting with '{'): `{n}`, `{n,}` or
// `{n,m}`, digits without leading zeros; max == -1 means no upper bound, a
// count too big to read is -1 in `min`. Returns the length, 0 if `s` is not a
// repetition (then Go reads the `{` as a literal).
std::size_t parse_repeat(std::string_view s, int& min, int& max) {
  std::size_t i = 1;
  const auto digit = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  const auto parse_int = [&](int& n) {
    if (!digit(i)) return false;
    if (s[i] == '0' && digit(i + 1)) return false;
    n = 0;
    bool overflow = false;
    for (; digit(i); ++i) {
      if (!overflow && n >= 100000000) overflow = true;
      if (!overflow) n = n * 10 + (s[i] - '0');
    }
    if (overflow) n = -1;
    return true;
  };
  if (!parse_int(min) || i >= s.size()) return 0;
  if (s[i] != ',') {
    max = min;
  } else {
    ++i;
    if (i >= s.size()) return 0;
    if (s[i] == '}') {
      max = -1;
    } else {
      if (!parse_int(max)) return 0;
      if (max < 0) min = -1;
    }
  }
  if (i >= s.size() || s[i] != '}') return 0;
  return i + 1;
}

// patternmatcher's Pattern.compile: walks the pattern rune by rune, deciding
// the match kind exactly as it does and turning wildcard patterns into tokens.
// patternmatcher escapes only `.+()$` for the regexp (its escape bitmap drops
// `|{}`), so `|` splits the regexp into branches and `{n,m}` repeats the
// element before it; both are plain text in exact/prefix/suffix patterns.
Result<void> compile_pattern(std::string_view p, Rule& rule) {
  using Kind = Rule::Kind;
  Kind kind = Kind::kExact;
  std::vector<Token>& toks = rule.tokens;
  std::vector<Alt>& alts = rule.alts;
  alts.assign(1, Alt{0, 0, true, false});
  // The first error Go's regexp compiler would report; it only matters if
  // the pattern turns out to be a regexp.
  std::string regexp_error;
  const auto fail_regexp = [&](std::string why) {
    if (regexp_error.empty()) regexp_error = std::move(why);
  };
  bool last_repeat = false;  // the previous element was a repetition operator
  const std::size_t n = p.size();
  // Go's text/scanner, which patternmatcher reads the pattern with, skips a
  // byte order mark at the start.
  std::size_t pos = p.starts_with("\xEF\xBB\xBF") ? 3 : 0;
  for (std::size_t i = 0; pos < n; ++i) {
    const Rune ch = decode_rune(p, pos);
    pos += ch.size;
    bool repeat = false;
    switch (ch.value) {
      case '*':
        repeat = true;  // `[^/]*`, `(.*/)?` and `.*` all end in one
        if (pos < n && p[pos] == '*') {
          ++pos;
          if (pos < n && p[pos] == '/') ++pos;  // `**/` is `**`
          if (pos == n) {
            if (kind == Kind::kExact) {
              kind = Kind::kPrefix;
            } else {
              toks.push_back({Op::kDStarEnd});
              kind = Kind::kGlob;
            }
          } else {
            toks.push_back({Op::kOptSkip});
            toks.push_back({Op::kDLoop});
            kind = Kind::kGlob;
          }
          if (i == 0) kind = Kind::kSuffix;
        } else {
          toks.push_back({Op::kStar});
          kind = Kind::kGlob;
        }
        break;
      case '?':
        toks.push_back({Op::kAny});
        kind = Kind::kGlob;
        break;
      case '\\': {
        if (pos >= n) return Error{"trailing '\\' escapes nothing"};
        const Rune esc = decode_rune(p, pos);
        pos += esc.size;
        toks.push_back({Op::kLit, Rep::kOnce, false, esc.value});
        kind = Kind::kGlob;
        break;
      }
      case '[': {
        Token tok{Op::kClass};
        auto end = compile_class(p, pos - 1, rule, tok);
        if (!end.ok()) return end.error();
        pos = end.value();
        toks.push_back(tok);
        kind = Kind::kGlob;
        break;
      }
      case ']':
        toks.push_back({Op::kLit, Rep::kOnce, false, U']'});
        kind = Kind::kGlob;
        break;
      case '^':
        // Not escaped by patternmatcher: an anchor in its regexp, but a
        // literal `^` when the pattern is matched as plain text.
        toks.push_back({Op::kAnchor});
        break;
      case '|':
        alts.back().end = static_cast<std::uint32_t>(toks.size());
        alts.push_back(Alt{static_cast<std::uint32_t>(toks.size()), 0, false, false});
        break;
      case '{': {
        int min = 0, max = 0;
        const std::size_t len = parse_repeat(p.substr(pos - 1), min, max);
        if (len == 0) {
          toks.push_back({Op::kLit, Rep::kOnce, false, U'{'});
          break;
        }
        const std::string op(p.substr(pos - 1, len));
        pos += len - 1;
        repeat = true;
        if (min < 0 || min > 1000 || max > 1000 || (max >= 0 && min > max)) {
          fail_regexp("invalid repetition count \"" + op + "\"");
          break;
        }
        if (last_repeat) {
          fail_regexp("repetition \"" + op + "\" follows another repetition or a '*'");
          break;
        }
        Alt& alt = alts.back();
        if (toks.size() == alt.begin) {
          // Nothing before it but the `^` patternmatcher puts first, or a `|`.
          if (alts.size() > 1) fail_regexp("repetition \"" + op + "\" has nothing to repeat");
          if (alts.size() == 1 && min == 0) alt.anchored_start = false;  // `^{0}`
          break;
        }
        const Token base = toks.back();
        if (base.op == Op::kAnchor) {
          if (min == 0) toks.pop_back();  // an optional `^` constrains nothing
          break;
        }
        if (base.op != Op::kLit && base.op != Op::kAny && base.op != Op::kClass) {
          fail_regexp("repetition \"" + op + "\" follows another repetition or a '*'");
          break;
        }
        const std::size_t copies = static_cast<std::size_t>(max < 0 ? min + 1 : max);
        if (toks.size() + copies > kMaxTokens) {
          fail_regexp("pattern is too large once \"" + op + "\" is expanded");
          break;
        }
        toks.pop_back();
        for (int k = 0; k < min; ++k) toks.push_back(base);
        Token extra = base;
        extra.rep = max < 0 ? Rep::kLoop : Rep::kOptional;
        for (int k = min; k < (max < 0 ? min + 1 : max); ++k) toks.push_back(extra);
        break;
      }
      default:
        toks.push_back({Op::kLit, Rep::kOnce, false, ch.value});
        break;
    }
    last_repeat = repeat;
    if (toks.size() > kMaxTokens) {
      fail_regexp("pattern is too large");
      toks.clear();  // keep scanning for the kind, without growing
    }
  }

  rule.kind = kind;
  switch (kind) {
    case Kind::kExact:
      rule.text = std::string(p);
      rule.min_slashes = rule.max_slashes = count_slashes(rule.text);
      break;
    case Kind::kPrefix:
      rule.text = std::string(p.substr(0, n - 2));
      rule.min_slashes = count_slashes(rule.text);
      break;
    case Kind::kSuffix:
      rule.text = std::string(p.substr(2));
      rule.min_slashes = count_slashes(rule.text);
      if (rule.text.starts_with('/')) --rule.min_slashes;  // `**/a` matches `a`
      break;
    case Kind::kGlob:
      break;
  }
  if (kind != Kind::kGlob) {
    toks.clear();
    rule.ranges.clear();
    alts.clear();
    return {};
  }
  if (!regexp_error.empty()) return Error{std::move(regexp_error)};
  alts.back().end = static_cast<std::uint32_t>(toks.size());
  alts.back().anchored_end = true;  // the `$` patternmatcher appends
  if (alts.size() != 1 || !alts[0].anchored_start) {
    rule.min_slashes = 0;
    rule.max_slashes = kUnbounded;
    return {};
  }

  // Prefilters for a single anchored branch. A literal code point compares
  // equal to the path's decoded code point; U+FFFD also stands for invalid
  // bytes, so it ends the literal runs (byte comparison would be wrong there).
  const auto plain = [](const Token& t) {
    return t.op == Op::kLit && t.rep == Rep::kOnce && t.rune != kRuneError;
  };
  std::size_t begin = 0;
  while (begin < toks.size() && toks[begin].op == Op::kAnchor) ++begin;  // `^` at 0 is a no-op
  for (std::size_t j = begin; j < toks.size() && plain(toks[j]); ++j) append_utf8(rule.lit_prefix, toks[j].rune);
  std::size_t tail = toks.size();
  while (tail > begin && plain(toks[tail - 1])) --tail;
  for (std::size_t j = tail; j < toks.size(); ++j) append_utf8(rule.lit_suffix, toks[j].rune);
  rule.literal = tail == begin;

  std::uint32_t slashes = 0, optional_slashes = 0;
  bool unbounded = false;
  for (const Token& t : toks) {
    bool slash = false;
    if (t.op == Op::kLit) slash = t.rune == U'/';
    if (t.op == Op::kDLoop || t.op == Op::kDStarEnd) unbounded = true;
    if (t.op == Op::kClass) {
      bool has_slash = false;
      for (std::uint32_t r = t.first; r < t.last; ++r) {
        if (rule.ranges[r].lo <= U'/' && U'/' <= rule.ranges[r].hi) has_slash = true;
      }
      // A class is never certain to consume a '/', only able to.
      if (has_slash != t.negated) {
        if (t.rep == Rep::kLoop) unbounded = true;
        ++optional_slashes;
      }
    }
    if (!slash) continue;
    if (t.rep == Rep::kOnce) ++slashes;
    if (t.rep == Rep::kOptional) ++optional_slashes;
    if (t.rep == Rep::kLoop) unbounded = true;
  }
  rule.min_slashes = slashes;
  rule.max_slashes = unbounded ? kUnbounded : slashes + optional_slashes;
  return {};
}

// ---- matching -------------------------------------------------------------------

// A set of NFA states (token indices, plus the token count = accept), with
// inline storage for branches of up to 8*64-1 tokens.
class StateSet {
 public:
  explicit StateSet(std::size_t bits) : words_((bits + 63) / 64) {
    if (words_ > kInline) {
      heap_.assign(words_, 0);
      data_ = heap_.data();
    } else {
      data_ = inline_;
      std::fill(inline_, inline_ + words_, 0);
    }
  }
  StateSet(const StateSet&) = delete;
  StateSet& operator=(const StateSet&) = delete;

  bool test(std::size_t i) const { return (data_[i / 64] >> (i % 64)) & 1; }
  void set(std::size_t i) { data_[i / 64] |= std::uint64_t{1} << (i % 64); }
  void clear() { std::fill(data_, data_ + words_, 0); }
  bool any_below(std::size_t limit) const {
    for (std::size_t w = 0; w < words_; ++w) {
      std::uint64_t bits = data_[w];
      if (w * 64 + 64 > limit) {
        const std::size_t keep = limit > w * 64 ? limit - w * 64 : 0;
        bits &= keep >= 64 ? ~std::uint64_t{0} : ((std::uint64_t{1} << keep) - 1);
      }
      if (bits) return true;
    }
    return false;
  }
  bool empty() const { return !any_below(words_ * 64); }
  // Both sets outlive the swap and have the same size: swapping the pointers
  // to their buffers is enough.
  void swap(StateSet& other) { std::swap(data_, other.data_); }
  template <typename F>
  void for_each(F&& f) const {
    for (std::size_t w = 0; w < words_; ++w) {
      for (std::uint64_t bits = data_[w]; bits; bits &= bits - 1) {
        f(w * 64 + static_cast<std::size_t>(__builtin_ctzll(bits)));
      }
    }
  }

 private:
  static constexpr std::size_t kInline = 8;
  std::size_t words_;
  std::uint64_t inline_[kInline];
  std::vector<std::uint64_t> heap_;
  std::uint64_t* data_;
};

// Simulates the NFA of one branch of a kGlob rule. Every step does O(tokens)
// work; nothing backtracks.
class Nfa {
 public:
  Nfa(const Rule& rule, const Alt& alt)
      : ranges_(rule.ranges),
        toks_(rule.tokens.data() + alt.begin),
        m_(alt.end - alt.begin),
        cur_(m_ + 1),
        next_(m_ + 1) {}

  // Lets a match begin here (`at_start`: at the start of the path).
  void start(bool at_start) { add(cur_, 0, at_start); }

  // Consumes one code point; false if no state is left.
  bool step(char32_t c) {
    next_.clear();
    cur_.for_each([&](std::size_t j) {
      if (j == m_) return;
      const Token& t = toks_[j];
      bool hit = false;
      switch (t.op) {
        case Op::kLit:
          hit = c == t.rune;
          break;
        case Op::kAny:
          hit = c != U'/';
          break;
        case Op::kClass:
          hit = in_class(t, c);
          break;
        case Op::kStar:
          if (c != U'/') add(next_, j, false);
          return;
        case Op::kDStarEnd:
          if (c != U'\n') add(next_, j, false);
          return;
        case Op::kDLoop:
          if (c != U'\n') next_.set(j);
          if (c == U'/') add(next_, j + 1, false);
          return;
        case Op::kOptSkip:
        case Op::kAnchor:
          return;
      }
      if (hit) add(next_, t.rep == Rep::kLoop ? j : j + 1, false);
    });
    cur_.swap(next_);
    return !cur_.empty();
  }

  // Feeds `s` code point by code point; false as soon as no state is left.
  bool feed(std::string_view s) {
    for (std::size_t pos = 0; pos < s.size();) {
      const Rune r = decode_rune(s, pos);
      pos += r.size;
      if (!step(r.value)) return false;
    }
    return true;
  }

  bool accepted() const { return cur_.test(m_); }
  // Some state can still consume input (the branch can match a longer path).
  bool alive() const { return cur_.any_below(m_); }

 private:
  bool in_class(const Token& t, char32_t c) const {
    bool found = false;
    for (std::uint32_t r = t.first; r < t.last && !found; ++r) {
      found = ranges_[r].lo <= c && c <= ranges_[r].hi;
    }
    return found != t.negated;
  }

  // Adds state j and everything reachable from it without consuming input.
  // Each state that lets input pass is entered at most once per set, so a
  // step is linear in the number of tokens.
  void add(StateSet& set, std::size_t j, bool at_start) {
    for (;;) {
      if (j == m_) {
        set.set(m_);
        return;
      }
      const Token& t = toks_[j];
      if (t.op == Op::kAnchor) {
        if (!at_start) return;  // `^` past the start: dead end
        ++j;
        continue;
      }
      if (set.test(j)) return;
      set.set(j);
      switch (t.op) {
        case Op::kOptSkip:
          set.set(j + 1);  // enter the `.*/` loop ...
          j += 2;          // ... or skip the group
          continue;
        case Op::kStar:
        case Op::kDStarEnd:
          ++j;  // may match nothing
          continue;
        case Op::kLit:
        case Op::kAny:
        case Op::kClass:
          if (t.rep == Rep::kOnce) return;
          ++j;  // x? and x* may match nothing
          continue;
        default:
          return;
      }
    }
  }

  const std::vector<Range>& ranges_;
  const Token* toks_;
  std::size_t m_;
  StateSet cur_, next_;
};

// ---- the walker's view of a path ----------------------------------------------
//
// BuildKit's walker tries the rules on every ancestor of a path before the
// path itself (MatchesUsingParentResults): at each level (the prefix of the
// path with k '/'), a rule that matched a parent level still counts as a
// match; otherwise it is tried only if it could change the result so far (an
// exclusion while not excluded, an exception while excluded). So a rule takes
// effect at the first level where it is tried and matches, and at every level
// below that. excluded() applies the rules one after another over all levels
// at once, which needs a single pass over the path per rule.

constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

// Bits over the levels of a path, inline for paths of up to 256 levels.
class LevelBits {
 public:
  explicit LevelBits(std::size_t n) {
    const std::size_t words = (n + 63) / 64;
    if (words > kInline) {
      heap_.assign(words, 0);
      data_ = heap_.data();
    }
  }
  LevelBits(const LevelBits&) = delete;
  LevelBits& operator=(const LevelBits&) = delete;

  bool test(std::size_t i) const { return (data_[i / 64] >> (i % 64)) & 1; }
  void assign_from(std::size_t first, std::size_t n, bool value) {
    for (std::size_t i = first; i < n; ++i) {
      const std::uint64_t bit = std::uint64_t{1} << (i % 64);
      data_[i / 64] = value ? (data_[i / 64] | bit) : (data_[i / 64] & ~bit);
    }
  }

 private:
  static constexpr std::size_t kInline = 4;
  std::uint64_t inline_[kInline] = {0, 0, 0, 0};
  std::vector<std::uint64_t> heap_;
  std::uint64_t* data_ = inline_;
};

// The levels at which a rule is tried: within the '/' counts it can match,
// and where the result so far is what the rule would change.
struct Candidates {
  const LevelBits& excluded;  // the result at each level before this rule
  bool exception;
  std::size_t lo, hi;  // hi: the last candidate level

  bool operator()(std::size_t k) const { return k >= lo && k <= hi && excluded.test(k) == exception; }
  std::size_t first_from(std::size_t k) const {
    for (k = std::max(k, lo); k <= hi; ++k) {
      if ((*this)(k)) return k;
    }
    return kNone;
  }
};

// Calls f(level, prefix) for the prefixes of `path` at the candidate levels,
// in order, until f returns true; returns that level or kNone.
template <typename F>
std::size_t scan_levels(std::string_view path, const Candidates& cand, F&& f) {
  std::size_t level = 0;
  for (std::size_t pos = 0;; ++pos) {
    if (pos == path.size() || path[pos] == '/') {
      if (cand(level) && f(path.substr(0, pos))) return level;
      if (pos == path.size() || level >= cand.hi) return kNone;
      ++level;
    }
  }
}

// The first candidate level at which one branch of a kGlob rule matches (Go's
// regexp MatchString: the branch is tied to the start of the text only if it
// is the first, to the end only if it is the last), in one pass of its NFA.
// '/' is ASCII, so a level boundary is always a code point boundary, and Go
// decodes a prefix's bytes the same way whether the path goes on or not.
std::size_t first_alt_level(const Rule& rule, const Alt& alt, std::string_view path, const Candidates& cand) {
  Nfa nfa(rule, alt);
  if (alt.anchored_start) nfa.start(true);
  std::size_t level = 0;
  for (std::size_t pos = 0;;) {
    if (!alt.anchored_start) nfa.start(pos == 0);  // a match may begin anywhere
    // A match not tied to the end is inside every longer prefix too.
    if (!alt.anchored_end && nfa.accepted()) return cand.first_from(level);
    if (pos == path.size() || path[pos] == '/') {
      if (alt.anchored_end && nfa.accepted() && cand(level)) return level;
      if (pos == path.size() || level >= cand.hi) return kNone;
    }
    const Rune r = decode_rune(path, pos);
    pos += r.size;
    if (r.value == U'/') ++level;
    if (!nfa.step(r.value) && alt.anchored_start) return kNone;
  }
}

// The first candidate level at which `rule` matches the prefix (patternmatcher's
// Pattern.match), or kNone.
std::size_t first_match_level(const Rule& rule, std::string_view path, const Candidates& cand) {
  switch (rule.kind) {
    case Rule::Kind::kExact:
      return scan_levels(path, cand, [&](std::string_view s) { return s == rule.text; });
    case Rule::Kind::kPrefix:
      return scan_levels(path, cand, [&](std::string_view s) { return s.starts_with(rule.text); });
    case Rule::Kind::kSuffix:
      return scan_levels(path, cand, [&](std::string_view s) {
        const std::string_view suffix = rule.text;
        if (s.ends_with(suffix)) return true;
        return !suffix.empty() && suffix[0] == '/' && s == suffix.substr(1);
      });
    case Rule::Kind::kGlob:
      break;
  }
  if (rule.alts.size() == 1 && rule.alts[0].anchored_start) {
    // Literal parts first: often they settle it without running the NFA.
    bool maybe = false;
    const std::size_t level = scan_levels(path, cand, [&](std::string_view s) {
      if (!s.starts_with(rule.lit_prefix) || !s.ends_with(rule.lit_suffix)) return false;
      if (rule.literal) return s.size() == rule.lit_prefix.size();
      maybe = true;
      return true;
    });
    if (level == kNone || !maybe) return level;
  }
  std::size_t first = kNone;
  for (const Alt& alt : rule.alts) first = std::min(first, first_alt_level(rule, alt, path, cand));
  return first;
}

// Could `rule` match some path `dir/...` strictly below `dir`?
bool may_match_below(const Rule& rule, std::string_view dir) {
  if (rule.max_slashes != kUnbounded && rule.max_slashes < count_slashes(dir) + 1) return false;
  switch (rule.kind) {
    case Rule::Kind::kExact:
      return rule.text.size() > dir.size() + 1 && rule.text.starts_with(dir) &&
             rule.text[dir.size()] == '/';
    case Rule::Kind::kPrefix:
      return prefix_compatible(rule.text, dir);
    case Rule::Kind::kSuffix:
      return true;  // `dir/<suffix>` ends with the suffix
    case Rule::Kind::kGlob: {
      // A branch not tied to the start of the path can match below anything.
      if (rule.alts.size() != 1 || !rule.alts[0].anchored_start) return true;
      if (!prefix_compatible(rule.lit_prefix, dir)) return false;
      Nfa nfa(rule, rule.alts[0]);
      nfa.start(true);
      return nfa.feed(dir) && nfa.step(U'/') && nfa.alive();
    }
  }
  return true;
}

// ---- reading the file -----------------------------------------------------------

// bufio.Scanner's default limit: a line of 64 KiB or more fails the read.
constexpr std::size_t kMaxLine = 64 * 1024;

std::string located(std::string_view source, std::size_t line, std::string_view what) {
  std::string out(source);
  out += ':';
  out += std::to_string(line);
  out += ": ";
  out += what;
  return out;
}

}  // namespace

DockerIgnore::DockerIgnore() = default;
DockerIgnore::~DockerIgnore() = default;
DockerIgnore::DockerIgnore(const DockerIgnore&) = default;
DockerIgnore& DockerIgnore::operator=(const DockerIgnore&) = default;
DockerIgnore::DockerIgnore(DockerIgnore&&) noexcept = default;
DockerIgnore& DockerIgnore::operator=(DockerIgnore&&) noexcept = default;

Result<DockerIgnore> DockerIgnore::parse(std::string_view text, std::string_view source_name) {
  DockerIgnore out;
  std::size_t line_no = 0;
  while (!text.empty()) {
    // bufio.ScanLines: up to '\n', one '\r' before it dropped.
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (line.size() >= kMaxLine) {
      return Error{located(source_name, line_no + 1,
                           "line is too long (Docker's reader stops at 65536 bytes)")};
    }
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line_no == 0 && line.starts_with("\xEF\xBB\xBF")) line.remove_prefix(3);
    ++line_no;

    // ignorefile.ReadAll: comments are recognized before trimming.
    if (line.starts_with('#')) continue;
    const std::string_view written = trim_space(line);
    if (written.empty()) continue;
    std::string_view body = written;
    const bool invert = body[0] == '!';
    if (invert) body = trim_space(body.substr(1));
    std::string normalized;
    if (!body.empty()) {
      normalized = clean_path(body);
      if (normalized.size() > 1 && normalized[0] == '/') normalized.erase(0, 1);
    }
    if (invert) normalized.insert(0, 1, '!');
    out.patterns_.push_back(normalized);

    // patternmatcher.New, on what the reader returned.
    const auto invalid = [&](std::string_view why) {
      std::string what = "invalid pattern \"";
      what += written;
      what += "\": ";
      what += why;
      return Error{located(source_name, line_no, what)};
    };
    const std::string_view trimmed = trim_space(normalized);
    if (trimmed.empty()) continue;
    std::string pattern = clean_path(trimmed);
    Rule rule;
    std::string_view p = pattern;
    if (p[0] == '!') {
      if (p.size() == 1) return invalid("'!' must be followed by a pattern");
      rule.exception = true;
      p.remove_prefix(1);
    }
    Result<void> compiled = compile_pattern(p, rule);
    if (!compiled.ok()) return invalid(compiled.error().message);
    out.has_exceptions_ = out.has_exceptions_ || rule.exception;
    out.rules_.push_back(std::move(rule));
  }
  return out;
}

bool DockerIgnore::excluded(std::string_view path) const {
  if (rules_.empty() || path.empty() || path == ".") return false;
  const std::size_t levels = count_slashes(path) + 1;
  LevelBits result(levels);  // excluded at each level, after the rules so far
  for (const Rule& rule : rules_) {
    if (rule.min_slashes >= levels) continue;
    Candidates cand{result, rule.exception, rule.min_slashes,
                    std::min<std::size_t>(rule.max_slashes, levels - 1)};
    while (cand.hi > cand.lo && !cand(cand.hi)) --cand.hi;
    if (!cand(cand.hi)) continue;  // nothing this rule could change
    const std::size_t first = first_match_level(rule, path, cand);
    if (first != kNone) result.assign_from(first, levels, !rule.exception);
  }
  return result.test(levels - 1);
}

bool DockerIgnore::may_include_below(std::string_view dir) const {
  if (!has_exceptions_) return false;
  if (dir.empty() || dir == ".") return true;
  for (const Rule& rule : rules_) {
    if (rule.exception && may_match_below(rule, dir)) return true;
  }
  return false;
}

const std::vector<std::string>& DockerIgnore::patterns() const { return patterns_; }

}  // namespace kiln::parser
