// The store's push records (schema version 2): blob sources, layer variants, and the
// migration of a version 1 kiln.db.
#include <sqlite3.h>

#include <gtest/gtest.h>

#include "cache/store.h"
#include "support.h"
#include "kiln_db_test_util.h"

namespace kiln::cache {
namespace {

namespace fs = std::filesystem;
using kiln::testing::TempDir;


Store open_store(const fs::path& root) {
  auto store = Store::open(root);
  if (!store) throw std::runtime_error(store.error().message);
  return std::move(store).value();
}

TEST(StoreRecords, AVersionOneDatabaseIsMigratedInPlace) {
  TempDir dir;
  const fs::path root = dir / "store";
  Digest blob = Digest::sha256_of("");
  {
    Store store = open_store(root);
    blob = *store.put_blob("manifest");
    ASSERT_TRUE(store.set_ref("example.com/app:1", blob).ok());
  }
  // What kiln 1's schema looked like.
  sql_column(root, "DROP TABLE blob_sources; DROP TABLE layer_variants; DROP TABLE context_hashes; UPDATE schema_version SET version = 1");
  ASSERT_EQ(sql_column(root, "SELECT version FROM schema_version"), std::vector<std::string>{"1"});

  Store store = open_store(root);
  EXPECT_EQ(sql_column(root, "SELECT version FROM schema_version"), std::vector<std::string>{"3"});
  auto ref = store.get_ref("example.com/app:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(*ref, blob);  // the old data is still there
  ASSERT_TRUE(store.add_blob_source(blob, "example.com", "app").ok());
  auto sources = store.blob_sources(blob);
  ASSERT_TRUE(sources.ok());
  ASSERT_EQ(sources->size(), 1u);
  EXPECT_EQ((*sources)[0].repository, "app");
}

TEST(StoreRecords, ALayerVariantIsLinkedFromItsSourceAndLivesAsLongAsIt) {
  TempDir dir;
  const fs::path root = dir / "store";
  Digest manifest = Digest::sha256_of(""), layer = manifest, variant = manifest;
  {
    Store store = open_store(root);
    layer = *store.put_blob("gzip layer");
    variant = *store.put_blob("zstd layer");
    manifest = *store.put_blob("manifest");
    ASSERT_TRUE(store.add_links(manifest, {layer}).ok());
    ASSERT_TRUE(store.set_ref("example.com/app:1", manifest).ok());
    ASSERT_TRUE(store.add_layer_variant(layer, LayerCompression::zstd, variant).ok());
    auto found = store.layer_variant(layer, LayerCompression::zstd);
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(*found, variant);
    auto none = store.layer_variant(layer, LayerCompression::gzip);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
  }
  {
    Store store = open_store(root);
    ASSERT_TRUE(store.collect_garbage().ok());
    EXPECT_TRUE(fs::exists(store.blob_path(variant)));  // reachable: ref -> manifest -> layer -> variant
    ASSERT_TRUE(store.delete_ref("example.com/app:1").ok());
    ASSERT_TRUE(store.collect_garbage().ok());
    EXPECT_FALSE(fs::exists(store.blob_path(variant)));
    auto gone = store.layer_variant(layer, LayerCompression::zstd);
    ASSERT_TRUE(gone.ok());
    EXPECT_FALSE(gone->has_value());
  }
  EXPECT_EQ(sql_column(root, "SELECT COUNT(*) FROM layer_variants"), std::vector<std::string>{"0"});
}

}  // namespace
}  // namespace kiln::cache
