// Pins a locale on the calling thread for a scope. libarchive converts entry names
// through the thread's locale, so the layer code pins one to make names independent of
// the caller's environment. Internal to the cache module.
#pragma once

#include <clocale>
#include <locale.h>

namespace kiln::cache {

class ScopedLocale {
 public:
  /// Switches this thread to locale `name` (e.g. "C", "C.UTF-8"); if the locale cannot
  /// be made, the thread's locale is left as it is.
  explicit ScopedLocale(const char* name) : locale_(newlocale(LC_ALL_MASK, name, static_cast<locale_t>(0))) {
    if (locale_ != static_cast<locale_t>(0)) previous_ = uselocale(locale_);
  }
  ~ScopedLocale() {
    if (locale_ == static_cast<locale_t>(0)) return;
    uselocale(previous_);
    freelocale(locale_);
  }
  ScopedLocale(const ScopedLocale&) = delete;
  ScopedLocale& operator=(const ScopedLocale&) = delete;

 private:
  locale_t locale_;
  locale_t previous_ = static_cast<locale_t>(0);
};

}  // namespace kiln::cache
