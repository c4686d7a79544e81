// `kiln load` of arbitrary bytes: push::load_archive (the library function behind the
// command) reads them as a docker or OCI archive, plain or compressed, into a fresh store.
// The archive and the store sit alone in a per-process directory, which must hold nothing
// else afterwards; the store must still list its refs. Errors are fine; a crash, hang,
// sanitizer report or a file outside the store is a bug.
#include <fcntl.h>

#include <cstddef>
#include <cstdint>

#include "cache/store.h"
#include "fuzz_support.h"
#include "push/image_archive.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  kiln::fuzz::silence_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace kiln;
  const fuzz::fs::path& parent = fuzz::process_dir("load_archive");
  const fuzz::fs::path archive = parent / "archive.tar";
  const fuzz::fs::path root = parent / "store";
  {
    UniqueFd file(::open(archive.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!file || !write_all(file.get(), data, size, archive.string()).ok()) fuzz::fail("write " + archive.string());
  }
  {
    auto store = cache::Store::open(root);
    if (!store.ok()) fuzz::fail(store.error().message);
    (void)push::load_archive(*store, archive);
    if (auto refs = store->list_refs(); !refs.ok()) fuzz::fail("the store no longer lists refs: " + refs.error().message);
  }
  fuzz::expect_only_entries(parent, {"archive.tar", "store"});
  fuzz::remove_tree(root);
  return 0;
}
