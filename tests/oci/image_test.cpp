#include "oci/image.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/digest.h"
#include "oci/media_types.h"

namespace kiln::oci {
namespace {

// Digests used by the fixtures (sha256 of "0", "1", ...).
const std::string kD0 = "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9";
const std::string kD1 = "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";
const std::string kD2 = "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35";
const std::string kD3 = "sha256:4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce";
const std::string kD4 = "sha256:4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a";
const std::string kD5 = "sha256:ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcfbec78f5564afe39d";

Digest digest(const std::string& text) { return Digest::parse(text).value(); }

Descriptor blob(std::string_view media_type, const std::string& digest_text, std::int64_t size) {
  Descriptor descriptor;
  descriptor.media_type = std::string(media_type);
  descriptor.digest = digest(digest_text);
  descriptor.size = size;
  return descriptor;
}

// The same document in the canonical form nlohmann writes: what to_json must produce
// for a document that has nothing to drop.
std::string canonical(const std::string& json) { return nlohmann::json::parse(json).dump(); }

// A Docker Hub manifest list, as the registry serves it (pretty-printed, Hub's key order).
const std::string kDockerManifestListJson = R"({
   "manifests": [
      {
         "digest": "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9",
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "platform": {
            "architecture": "amd64",
            "os": "linux"
         },
         "size": 528
      },
      {
         "digest": "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "platform": {
            "architecture": "arm",
            "os": "linux",
            "variant": "v6"
         },
         "size": 527
      },
      {
         "digest": "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35",
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "platform": {
            "architecture": "arm",
            "os": "linux",
            "variant": "v7"
         },
         "size": 527
      },
      {
         "digest": "sha256:4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce",
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "platform": {
            "architecture": "arm64",
            "os": "linux",
            "variant": "v8"
         },
         "size": 527
      },
      {
         "digest": "sha256:4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a",
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "platform": {
            "architecture": "386",
            "os": "linux"
         },
         "size": 527
      },
      {
         "digest": "sha256:ef2d127de37b942baad06145e54b0c619a1f22327b2ebbcfbec78f5564afe39d",
         "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "platform": {
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.17763.5458"
         },
         "size": 1161
      }
   ],
   "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
   "schemaVersion": 2
})";

// An OCI index as BuildKit pushes it: two images and their attestation manifests.
const std::string kOciIndexWithAttestationsJson = R"({
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.index.v1+json",
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9",
      "size": 1613,
      "platform": {"architecture": "amd64", "os": "linux"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
      "size": 1613,
      "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35",
      "size": 839,
      "annotations": {
        "vnd.docker.reference.digest": "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9",
        "vnd.docker.reference.type": "attestation-manifest"
      },
      "platform": {"architecture": "unknown", "os": "unknown"}
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "digest": "sha256:4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce",
      "size": 839,
      "annotations": {
        "vnd.docker.reference.digest": "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
        "vnd.docker.reference.type": "attestation-manifest"
      },
      "platform": {"architecture": "unknown", "os": "unknown"}
    }
  ],
  "annotations": {"org.opencontainers.image.created": "2024-05-14T09:12:43Z"}
})";

// A Docker schema 2 manifest with a Windows-style foreign layer.
const std::string kDockerManifestJson = R"({
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1472,
      "digest": "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
         "size": 1718332879,
         "digest": "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
         "urls": [
            "https://mcr.microsoft.com/v2/windows/servercore/blobs/sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
         ]
      },
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 3408729,
         "digest": "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
      }
   ]
})";

// An OCI image config with every run setting and a BuildKit-style history.
const std::string kOciConfigJson = R"({
  "architecture": "arm64",
  "variant": "v8",
  "os": "linux",
  "created": "2024-05-14T09:12:43.532884207Z",
  "author": "Dev <dev@example.com>",
  "config": {
    "User": "node",
    "ExposedPorts": {"3000/tcp": {}, "9229/tcp": {}},
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_ENV=production"],
    "Entrypoint": ["/usr/local/bin/docker-entrypoint.sh"],
    "Cmd": ["node", "server.js"],
    "Volumes": {"/data": {}},
    "WorkingDir": "/app",
    "Labels": {"maintainer": "Dev <dev@example.com>", "org.opencontainers.image.source": "https://github.com/example/app"},
    "StopSignal": "SIGQUIT",
    "ArgsEscaped": true,
    "Healthcheck": {
      "Test": ["CMD-SHELL", "curl -f http://localhost:3000/ || exit 1"],
      "Interval": 30000000000,
      "Timeout": 5000000000,
      "StartPeriod": 10000000000,
      "StartInterval": 2000000000,
      "Retries": 3
    },
    "OnBuild": ["COPY . /app"],
    "Shell": ["/bin/bash", "-o", "pipefail", "-c"]
  },
  "rootfs": {
    "type": "layers",
    "diff_ids": [
      "sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9",
      "sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b",
      "sha256:d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35",
      "sha256:4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce"
    ]
  },
  "history": [
    {"created": "2024-05-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file:5f1e in / "},
    {"created": "2024-05-01T00:00:00Z", "created_by": "/bin/sh -c #(nop)  CMD [\"sh\"]", "empty_layer": true},
    {"created": "2024-05-14T09:12:40Z", "created_by": "WORKDIR /app", "comment": "buildkit.dockerfile.v0"},
    {"created": "2024-05-14T09:12:42Z", "created_by": "RUN /bin/sh -c npm ci && npm cache clean --force > /dev/null # buildkit", "comment": "buildkit.dockerfile.v0"},
    {"created": "2024-05-14T09:12:43Z", "created_by": "COPY . . # buildkit", "comment": "buildkit.dockerfile.v0"},
    {"created": "2024-05-14T09:12:43Z", "created_by": "ENV APP_ENV=production", "comment": "buildkit.dockerfile.v0", "empty_layer": true}
  ]
})";

// A config written by the classic Docker builder: nulls for unset lists, and many
// members (container_config, Hostname, ...) the OCI model does not keep.
const std::string kDockerClassicConfigJson =
    R"({"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,)"
    R"("AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,)"
    R"("Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"],)"
    R"("Image":"sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9","Volumes":null,)"
    R"("WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},)"
    R"("container":"0c4c8da4e7ff64e6db6ab0e4c4b1bb0ed9c7f7bc06f1b5c06a5d9f0e7c3f3a1b",)"
    R"("container_config":{"Hostname":"0c4c8da4e7ff","Cmd":["/bin/sh","-c","#(nop) ","CMD [\"sh\"]"]},)"
    R"("created":"2023-07-18T23:19:33.655005962Z","docker_version":"20.10.23",)"
    R"("history":[{"created":"2023-07-18T23:19:33.538571854Z","created_by":"/bin/sh -c #(nop) ADD file:7e9002edaafd4e4579b65c8f0aaabde1aeb7fd3f8d95579f7fd3443cef785fd1 in / "},)"
    R"({"created":"2023-07-18T23:19:33.655005962Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}],)"
    R"("os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"]}})";

TEST(MediaTypes, LayerCompression) {
  EXPECT_EQ(layer_compression(kOciLayer), Compression::none);
  EXPECT_EQ(layer_compression(kOciLayerGzip), Compression::gzip);
  EXPECT_EQ(layer_compression(kOciLayerZstd), Compression::zstd);
  EXPECT_EQ(layer_compression(kDockerLayer), Compression::none);
  EXPECT_EQ(layer_compression(kDockerLayerGzip), Compression::gzip);
  EXPECT_EQ(layer_compression(kDockerLayerZstd), Compression::zstd);
  EXPECT_EQ(layer_compression(kDockerForeignLayerGzip), Compression::gzip);
  EXPECT_EQ(layer_compression(kOciForeignLayerZstd), Compression::zstd);
  EXPECT_EQ(layer_compression("application/vnd.oci.image.layer.v1.tar+gzip; charset=binary"), Compression::gzip);
  EXPECT_EQ(layer_compression(kOciConfig), std::nullopt);
  EXPECT_EQ(layer_compression("application/vnd.in-toto+json"), std::nullopt);
  EXPECT_EQ(layer_compression(""), std::nullopt);
}

TEST(MediaTypes, ManifestAndIndexKinds) {
  EXPECT_TRUE(is_manifest(kOciManifest));
  EXPECT_TRUE(is_manifest(kDockerManifest));
  EXPECT_TRUE(is_manifest("application/vnd.docker.distribution.manifest.v2+json ; charset=utf-8"));
  EXPECT_FALSE(is_manifest(kOciIndex));
  EXPECT_FALSE(is_manifest("application/vnd.docker.distribution.manifest.v1+prettyjws"));
  EXPECT_TRUE(is_index(kOciIndex));
  EXPECT_TRUE(is_index(kDockerManifestList));
  EXPECT_FALSE(is_index(kOciManifest));
  EXPECT_FALSE(is_index(""));
}

TEST(MediaTypes, ConvertBetweenFlavors) {
  EXPECT_EQ(convert_media_type(kOciManifest, MediaTypeFlavor::docker), kDockerManifest);
  EXPECT_EQ(convert_media_type(kDockerManifest, MediaTypeFlavor::oci), kOciManifest);
  EXPECT_EQ(convert_media_type(kOciIndex, MediaTypeFlavor::docker), kDockerManifestList);
  EXPECT_EQ(convert_media_type(kOciConfig, MediaTypeFlavor::docker), kDockerConfig);
  EXPECT_EQ(convert_media_type(kDockerLayerGzip, MediaTypeFlavor::oci), kOciLayerGzip);
  EXPECT_EQ(convert_media_type(kOciLayerZstd, MediaTypeFlavor::docker), kDockerLayerZstd);
  EXPECT_EQ(convert_media_type(kOciLayer, MediaTypeFlavor::oci), kOciLayer);
  EXPECT_EQ(convert_media_type(kDockerForeignLayerGzip, MediaTypeFlavor::oci), kDockerForeignLayerGzip);
  EXPECT_EQ(convert_media_type("application/vnd.in-toto+json", MediaTypeFlavor::docker),
            "application/vnd.in-toto+json");
  EXPECT_EQ(layer_media_type(Compression::gzip, MediaTypeFlavor::oci), kOciLayerGzip);
  EXPECT_EQ(layer_media_type(Compression::gzip, MediaTypeFlavor::docker), kDockerLayerGzip);
  EXPECT_EQ(layer_media_type(Compression::none, MediaTypeFlavor::docker), kDockerLayer);
  EXPECT_EQ(layer_media_type(Compression::zstd, MediaTypeFlavor::oci), kOciLayerZstd);
}

TEST(Index, ReadsDockerHubManifestList) {
  const auto index = Index::from_json(kDockerManifestListJson);
  ASSERT_TRUE(index.ok()) << index.error().message;
  EXPECT_EQ(index->schema_version, 2);
  EXPECT_EQ(index->media_type, kDockerManifestList);
  ASSERT_EQ(index->manifests.size(), 6u);
  const Descriptor& arm64 = index->manifests[3];
  EXPECT_EQ(arm64.media_type, kDockerManifest);
  EXPECT_EQ(arm64.digest, digest(kD3));
  EXPECT_EQ(arm64.size, 527);
  ASSERT_TRUE(arm64.platform.has_value());
  EXPECT_EQ(arm64.platform->str(), "linux/arm64/v8");
  EXPECT_EQ(index->manifests[5].platform->os_version, "10.0.17763.5458");

  // Platform selection as a puller does it: the first entry that matches.
  const auto select = [&](const std::string& want) -> int {
    const Platform platform = Platform::parse(want).value();
    for (std::size_t i = 0; i < index->manifests.size(); ++i) {
      if (index->manifests[i].platform && platform.matches(*index->manifests[i].platform)) return static_cast<int>(i);
    }
    return -1;
  };
  EXPECT_EQ(select("linux/amd64"), 0);
  EXPECT_EQ(select("linux/arm/v6"), 1);
  EXPECT_EQ(select("linux/arm"), 2);
  EXPECT_EQ(select("linux/arm64"), 3);
  EXPECT_EQ(select("linux/aarch64"), 3);
  EXPECT_EQ(select("linux/386"), 4);
  EXPECT_EQ(select("windows/amd64"), 5);
  EXPECT_EQ(select("linux/riscv64"), -1);
}

TEST(Index, DockerManifestListRoundTripsToCanonicalBytes) {
  const auto index = Index::from_json(kDockerManifestListJson);
  ASSERT_TRUE(index.ok()) << index.error().message;
  const std::string bytes = index->to_json(MediaTypeFlavor::docker);
  EXPECT_EQ(bytes, canonical(kDockerManifestListJson));
  const auto again = Index::from_json(bytes);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*again, *index);
  EXPECT_EQ(again->to_json(MediaTypeFlavor::docker), bytes);
}

TEST(Index, OciIndexWithAttestations) {
  const auto index = Index::from_json(kOciIndexWithAttestationsJson);
  ASSERT_TRUE(index.ok()) << index.error().message;
  EXPECT_EQ(index->media_type, kOciIndex);
  ASSERT_EQ(index->manifests.size(), 4u);
  EXPECT_EQ(index->annotations.at("org.opencontainers.image.created"), "2024-05-14T09:12:43Z");
  const Descriptor& attestation = index->manifests[2];
  EXPECT_EQ(attestation.platform->str(), "unknown/unknown");
  EXPECT_EQ(attestation.annotations.at("vnd.docker.reference.type"), "attestation-manifest");
  EXPECT_EQ(attestation.annotations.at("vnd.docker.reference.digest"), kD0);

  // No real platform selects an attestation manifest.
  for (const char* want : {"linux/amd64", "linux/arm64", "linux/arm64/v8", "linux/arm/v7"}) {
    const Platform platform = Platform::parse(want).value();
    EXPECT_FALSE(platform.matches(*index->manifests[2].platform)) << want;
    EXPECT_FALSE(platform.matches(*index->manifests[3].platform)) << want;
  }
  EXPECT_TRUE(Platform::parse("linux/arm64").value().matches(*index->manifests[1].platform));

  EXPECT_EQ(index->to_json(), canonical(kOciIndexWithAttestationsJson));
}

TEST(Manifest, ReadsDockerSchema2Manifest) {
  const auto manifest = Manifest::from_json(kDockerManifestJson);
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  EXPECT_EQ(manifest->media_type, kDockerManifest);
  EXPECT_EQ(manifest->config.media_type, kDockerConfig);
  EXPECT_EQ(manifest->config.digest, digest(kD0));
  EXPECT_EQ(manifest->config.size, 1472);
  ASSERT_EQ(manifest->layers.size(), 2u);
  EXPECT_EQ(manifest->layers[0].size, 1718332879);
  ASSERT_EQ(manifest->layers[0].urls.size(), 1u);
  EXPECT_TRUE(manifest->layers[0].urls[0].starts_with("https://mcr.microsoft.com/"));
  EXPECT_EQ(layer_compression(manifest->layers[1].media_type), Compression::gzip);
  EXPECT_EQ(manifest->to_json(MediaTypeFlavor::docker), canonical(kDockerManifestJson));
}

TEST(Manifest, FlavorSwitchRewritesMediaTypes) {
  const auto manifest = Manifest::from_json(kDockerManifestJson);
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  const std::string oci = manifest->to_json(MediaTypeFlavor::oci);
  EXPECT_EQ(oci, R"({"config":{"digest":")" + kD0 +
                     R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":1472},)"
                     R"("layers":[{"digest":")" +
                     kD1 +
                     R"(","mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",)"
                     R"("size":1718332879,"urls":["https://mcr.microsoft.com/v2/windows/servercore/blobs/)" +
                     kD1 +
                     R"("]},)"
                     R"({"digest":")" +
                     kD2 +
                     R"(","mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":3408729}],)"
                     R"("mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})");
  // And back: the Docker flavour of the OCI document is the original document.
  const auto reread = Manifest::from_json(oci);
  ASSERT_TRUE(reread.ok()) << reread.error().message;
  EXPECT_EQ(reread->to_json(MediaTypeFlavor::docker), canonical(kDockerManifestJson));
}

TEST(Manifest, BuiltInCodeSerialisesToExactBytes) {
  Manifest manifest;
  manifest.config = blob(kOciConfig, kD0, 1234);
  manifest.layers.push_back(blob(layer_media_type(Compression::zstd, MediaTypeFlavor::oci), kD1, 99));
  manifest.annotations["org.opencontainers.image.base.name"] = "docker.io/library/alpine:3.20";
  const std::string expected =
      R"({"annotations":{"org.opencontainers.image.base.name":"docker.io/library/alpine:3.20"},)"
      R"("config":{"digest":")" +
      kD0 +
      R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":1234},)"
      R"("layers":[{"digest":")" +
      kD1 +
      R"(","mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","size":99}],)"
      R"("mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})";
  EXPECT_EQ(manifest.to_json(), expected);
  EXPECT_EQ(manifest.to_json(MediaTypeFlavor::docker),
            R"({"annotations":{"org.opencontainers.image.base.name":"docker.io/library/alpine:3.20"},)"
            R"("config":{"digest":")" +
                kD0 +
                R"(","mediaType":"application/vnd.docker.container.image.v1+json","size":1234},)"
                R"("layers":[{"digest":")" +
                kD1 +
                R"(","mediaType":"application/vnd.docker.image.rootfs.diff.tar.zstd","size":99}],)"
                R"("mediaType":"application/vnd.docker.distribution.manifest.v2+json","schemaVersion":2})");

  // An image with no layers still has a (empty) layers list, as the spec requires.
  Manifest empty;
  empty.config = manifest.config;
  EXPECT_EQ(empty.to_json(),
            R"({"config":{"digest":")" + kD0 +
                R"(","mediaType":"application/vnd.oci.image.config.v1+json","size":1234},)"
                R"("layers":[],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2})");
}

TEST(Manifest, SubjectAndArtifactTypeRoundTrip) {
  const std::string json = R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                           R"("artifactType":"application/vnd.example.sbom+json",)"
                           R"("config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":")" +
                           kD4 + R"(","size":2},"layers":[{"mediaType":"application/spdx+json","digest":")" + kD5 +
                           R"(","size":4096}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                           R"("digest":")" +
                           kD0 + R"(","size":1613}})";
  const auto manifest = Manifest::from_json(json);
  ASSERT_TRUE(manifest.ok()) << manifest.error().message;
  EXPECT_EQ(manifest->artifact_type, "application/vnd.example.sbom+json");
  ASSERT_TRUE(manifest->subject.has_value());
  EXPECT_EQ(manifest->subject->digest, digest(kD0));
  EXPECT_EQ(manifest->to_json(), canonical(json));
}

TEST(ImageConfig, ReadsOciConfigWithHistory) {
  const auto config = ImageConfig::from_json(kOciConfigJson);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, "arm64");
  EXPECT_EQ(config->variant, "v8");
  EXPECT_EQ(config->os, "linux");
  EXPECT_EQ(config->platform().str(), "linux/arm64/v8");
  EXPECT_EQ(config->created, "2024-05-14T09:12:43.532884207Z");
  EXPECT_EQ(config->author, "Dev <dev@example.com>");

  const ContainerConfig& run = config->config;
  EXPECT_EQ(run.user, "node");
  EXPECT_EQ(run.exposed_ports, (std::set<std::string>{"3000/tcp", "9229/tcp"}));
  EXPECT_EQ(run.env, (std::vector<std::string>{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                               "APP_ENV=production"}));
  EXPECT_EQ(run.entrypoint, (std::vector<std::string>{"/usr/local/bin/docker-entrypoint.sh"}));
  EXPECT_EQ(run.cmd, (std::vector<std::string>{"node", "server.js"}));
  EXPECT_EQ(run.volumes, (std::set<std::string>{"/data"}));
  EXPECT_EQ(run.working_dir, "/app");
  EXPECT_EQ(run.labels.at("org.opencontainers.image.source"), "https://github.com/example/app");
  EXPECT_EQ(run.stop_signal, "SIGQUIT");
  EXPECT_TRUE(run.args_escaped);
  ASSERT_TRUE(run.healthcheck.has_value());
  EXPECT_EQ(run.healthcheck->test, (std::vector<std::string>{"CMD-SHELL", "curl -f http://localhost:3000/ || exit 1"}));
  EXPECT_EQ(run.healthcheck->interval, std::chrono::seconds(30));
  EXPECT_EQ(run.healthcheck->timeout, std::chrono::seconds(5));
  EXPECT_EQ(run.healthcheck->start_period, std::chrono::seconds(10));
  EXPECT_EQ(run.healthcheck->start_interval, std::chrono::seconds(2));
  EXPECT_EQ(run.healthcheck->retries, 3);
  EXPECT_EQ(run.on_build, (std::vector<std::string>{"COPY . /app"}));
  EXPECT_EQ(run.shell, (std::vector<std::string>{"/bin/bash", "-o", "pipefail", "-c"}));

  EXPECT_EQ(config->rootfs.type, "layers");
  EXPECT_EQ(config->rootfs.diff_ids, (std::vector<Digest>{digest(kD0), digest(kD1), digest(kD2), digest(kD3)}));
  ASSERT_EQ(config->history.size(), 6u);
  EXPECT_EQ(config->history[1].created_by, "/bin/sh -c #(nop)  CMD [\"sh\"]");
  EXPECT_TRUE(config->history[1].empty_layer);
  EXPECT_FALSE(config->history[2].empty_layer);
  EXPECT_EQ(config->history[3].comment, "buildkit.dockerfile.v0");
  // Every history entry that made a layer has a diff_id.
  std::size_t layers = 0;
  for (const HistoryEntry& entry : config->history) layers += entry.empty_layer ? 0 : 1;
  EXPECT_EQ(layers, config->rootfs.diff_ids.size());

  // Nothing was dropped, so the canonical bytes are the document's own, and stable.
  const std::string bytes = config->to_json();
  EXPECT_EQ(bytes, canonical(kOciConfigJson));
  EXPECT_NE(bytes.find(R"("Interval":30000000000)"), std::string::npos);
  EXPECT_NE(bytes.find("npm cache clean --force > /dev/null"), std::string::npos);  // no \u003e escaping
  const auto again = ImageConfig::from_json(bytes);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(*again, *config);
  EXPECT_EQ(again->to_json(MediaTypeFlavor::docker), bytes);
}

TEST(ImageConfig, ReadsClassicDockerConfigWithNulls) {
  const auto config = ImageConfig::from_json(kDockerClassicConfigJson);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->config.cmd, (std::vector<std::string>{"sh"}));
  EXPECT_TRUE(config->config.entrypoint.empty());
  EXPECT_TRUE(config->config.volumes.empty());
  EXPECT_TRUE(config->config.labels.empty());
  EXPECT_FALSE(config->config.healthcheck.has_value());
  ASSERT_EQ(config->history.size(), 2u);
  EXPECT_TRUE(config->history[1].empty_layer);
  // Docker-only members (container_config, Hostname, Image, ...) are not kept.
  EXPECT_EQ(
      config->to_json(),
      R"({"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},)"
      R"("created":"2023-07-18T23:19:33.655005962Z","history":[{"created":"2023-07-18T23:19:33.538571854Z",)"
      R"("created_by":"/bin/sh -c #(nop) ADD file:7e9002edaafd4e4579b65c8f0aaabde1aeb7fd3f8d95579f7fd3443cef785fd1 in / "},)"
      R"({"created":"2023-07-18T23:19:33.655005962Z","created_by":"/bin/sh -c #(nop)  CMD [\"sh\"]","empty_layer":true}],)"
      R"("os":"linux","rootfs":{"diff_ids":[")" +
          kD1 + R"("],"type":"layers"}})");
}

TEST(ImageConfig, EmptyFieldsAreOmittedAsGoOmitempty) {
  ImageConfig config;
  config.architecture = "amd64";
  config.os = "linux";
  EXPECT_EQ(config.to_json(), R"({"architecture":"amd64","os":"linux","rootfs":{"diff_ids":[],"type":"layers"}})");

  // A healthcheck that is set but empty (HEALTHCHECK with all defaults) stays, as Docker's pointer does.
  config.config.healthcheck = Healthcheck{};
  config.config.args_escaped = false;
  EXPECT_EQ(
      config.to_json(),
      R"({"architecture":"amd64","config":{"Healthcheck":{}},"os":"linux","rootfs":{"diff_ids":[],"type":"layers"}})");
  config.config.healthcheck->test = {"NONE"};
  EXPECT_EQ(config.to_json(), R"({"architecture":"amd64","config":{"Healthcheck":{"Test":["NONE"]}},"os":"linux",)"
                              R"("rootfs":{"diff_ids":[],"type":"layers"}})");
}

TEST(Canonical, SameValueSameBytesSameDigest) {
  // Two configs built in different orders are the same value and so the same blob.
  ImageConfig a;
  a.architecture = "amd64";
  a.os = "linux";
  a.config.labels = {{"b", "2"}, {"a", "1"}};
  a.config.exposed_ports = {"8080/tcp", "443/tcp"};
  a.config.env = {"A=1", "B=<&>"};
  a.rootfs.diff_ids = {digest(kD0)};
  ImageConfig b;
  b.rootfs.diff_ids = {digest(kD0)};
  b.config.env = {"A=1", "B=<&>"};
  b.config.exposed_ports = {"443/tcp", "8080/tcp"};
  b.config.labels["a"] = "1";
  b.config.labels["b"] = "2";
  b.os = "linux";
  b.architecture = "amd64";
  ASSERT_EQ(a, b);
  const std::string bytes = a.to_json();
  EXPECT_EQ(bytes, b.to_json());
  EXPECT_EQ(Digest::sha256_of(bytes), Digest::sha256_of(b.to_json()));
  EXPECT_EQ(bytes,
            R"({"architecture":"amd64","config":{"Env":["A=1","B=<&>"],"ExposedPorts":{"443/tcp":{},"8080/tcp":{}},)"
            R"("Labels":{"a":"1","b":"2"}},"os":"linux","rootfs":{"diff_ids":[")" +
                kD0 + R"("],"type":"layers"}})");
  // Reading the bytes back and writing them again changes nothing.
  EXPECT_EQ(ImageConfig::from_json(bytes).value().to_json(), bytes);
  // A different value has a different digest.
  b.config.env.push_back("C=3");
  EXPECT_NE(Digest::sha256_of(b.to_json()), Digest::sha256_of(bytes));
}

TEST(Canonical, InvalidUtf8IsReplacedNotThrown) {
  ImageConfig config;
  config.architecture = "amd64";
  config.os = "linux";
  config.config.labels["bad"] = std::string(
      "a\xff"
      "b");
  config.config.labels["unicode"] = "caf\xc3\xa9 \xe2\x9c\x93";
  const std::string bytes = config.to_json();
  EXPECT_NE(bytes.find("\"a\xef\xbf\xbd"
                       "b\""),
            std::string::npos);                                          // U+FFFD
  EXPECT_NE(bytes.find("caf\xc3\xa9 \xe2\x9c\x93"), std::string::npos);  // UTF-8 kept as is
}

struct BadDocument {
  std::string json;
  std::string error;
};

std::string manifest_with_layer(const std::string& layer) {
  return R"({"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":")" + kD0 +
         R"(","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" + kD1 +
         R"(","size":1},{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":")" + kD2 +
         R"(","size":1},)" + layer + "]}";
}

TEST(Manifest, MalformedDocumentsNameTheField) {
  const std::vector<BadDocument> cases = {
      {"[]", "manifest: not a JSON object"},
      {"2", "manifest: not a JSON object"},
      {"{}", "manifest: schemaVersion: missing"},
      {R"({"schemaVersion":"2"})", "manifest: schemaVersion: expected an integer, got string"},
      {R"({"schemaVersion":1,"name":"library/busybox","tag":"latest","fsLayers":[]})",
       "manifest: schemaVersion: unsupported version 1, expected 2"},
      {R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]})",
       R"(manifest: mediaType: "application/vnd.oci.image.index.v1+json" is not an image manifest type)"},
      {R"({"schemaVersion":2,"layers":[]})", "manifest: config: missing"},
      {R"({"schemaVersion":2,"config":{"mediaType":"a","digest":")" + kD0 + R"(","size":1}})",
       "manifest: layers: missing"},
      {R"({"schemaVersion":2,"config":{"mediaType":"a","digest":")" + kD0 + R"(","size":1},"layers":{}})",
       "manifest: layers: expected an array, got object"},
      {R"({"schemaVersion":2,"config":{"digest":")" + kD0 + R"(","size":1},"layers":[]})",
       "manifest: config.mediaType: missing"},
      {R"({"schemaVersion":2,"config":{"mediaType":"a","size":1},"layers":[]})", "manifest: config.digest: missing"},
      {R"({"schemaVersion":2,"config":{"mediaType":"a","digest":")" + kD0 + R"("},"layers":[]})",
       "manifest: config.size: missing"},
      {R"({"schemaVersion":2,"config":"sha256:x","layers":[]})", "manifest: config: expected an object, got string"},
      {manifest_with_layer(R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"x","size":1})"),
       R"(manifest: layers[2].digest: invalid digest "x")"},
      {manifest_with_layer(R"({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:abc","size":1})"),
       R"(manifest: layers[2].digest: invalid digest "sha256:abc")"},
      {manifest_with_layer(R"({"mediaType":"a","digest":")" + kD3 + R"(","size":-1})"),
       "manifest: layers[2].size: must not be negative"},
      {manifest_with_layer(R"({"mediaType":"a","digest":")" + kD3 + R"(","size":1.5})"),
       "manifest: layers[2].size: expected an integer, got number"},
      {manifest_with_layer(R"({"mediaType":"a","digest":")" + kD3 + R"(","size":9223372036854775808})"),
       "manifest: layers[2].size: integer out of range"},
      {manifest_with_layer(R"({"mediaType":7,"digest":")" + kD3 + R"(","size":1})"),
       "manifest: layers[2].mediaType: expected a string, got number"},
      {manifest_with_layer(R"("sha256:x")"), "manifest: layers[2]: expected an object, got string"},
      {manifest_with_layer(R"({"mediaType":"a","digest":")" + kD3 + R"(","size":1,"urls":["u",3]})"),
       "manifest: layers[2].urls[1]: expected a string, got number"},
      {manifest_with_layer(R"({"mediaType":"a","digest":")" + kD3 + R"(","size":1,"annotations":{"k":1}})"),
       "manifest: layers[2].annotations.k: expected a string, got number"},
  };
  for (const BadDocument& bad : cases) {
    const auto manifest = Manifest::from_json(bad.json);
    ASSERT_FALSE(manifest.ok()) << bad.json;
    EXPECT_EQ(manifest.error().message, bad.error) << bad.json;
  }
}

TEST(Manifest, SyntaxErrorsSayWhere) {
  const auto truncated = Manifest::from_json(R"({"schemaVersion":2,"config":)");
  ASSERT_FALSE(truncated.ok());
  EXPECT_TRUE(truncated.error().message.starts_with("manifest: invalid JSON: parse error at line 1, column 29"))
      << truncated.error().message;
  const auto empty = Manifest::from_json("");
  ASSERT_FALSE(empty.ok());
  EXPECT_TRUE(empty.error().message.starts_with("manifest: invalid JSON: ")) << empty.error().message;
  // Hostile nesting is an error, not a crash.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  const auto nested = Manifest::from_json(deep);
  ASSERT_FALSE(nested.ok());
  EXPECT_EQ(nested.error().message, "manifest: not a JSON object");
}

TEST(Index, MalformedDocumentsNameTheField) {
  const std::string entry =
      R"({"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" + kD0 + R"(","size":10,"platform":)";
  const std::vector<BadDocument> cases = {
      {R"({"schemaVersion":2})", "index: manifests: missing"},
      {R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","manifests":[]})",
       R"(index: mediaType: "application/vnd.docker.distribution.manifest.v2+json" is not an index type)"},
      {R"({"schemaVersion":2,"manifests":[)" + entry + R"({"architecture":"amd64"}}]})",
       "index: manifests[0].platform.os: missing"},
      {R"({"schemaVersion":2,"manifests":[)" + entry + R"({"os":"linux"}}]})",
       "index: manifests[0].platform.architecture: missing"},
      {R"({"schemaVersion":2,"manifests":[)" + entry + R"("linux/amd64"}]})",
       "index: manifests[0].platform: expected an object, got string"},
      {R"({"schemaVersion":2,"manifests":[)" + entry +
           R"({"os":"linux","architecture":"amd64","os.features":"sse4"}}]})",
       "index: manifests[0].platform.os.features: expected an array, got string"},
      {R"({"schemaVersion":2,"manifests":[],"subject":{"mediaType":"a","digest":"sha256:1","size":1}})",
       R"(index: subject.digest: invalid digest "sha256:1")"},
      {R"({"schemaVersion":2,"manifests":[],"annotations":[]})", "index: annotations: expected an object, got array"},
  };
  for (const BadDocument& bad : cases) {
    const auto index = Index::from_json(bad.json);
    ASSERT_FALSE(index.ok()) << bad.json;
    EXPECT_EQ(index.error().message, bad.error) << bad.json;
  }
  // An index without mediaType (allowed by OCI) and with null optional members reads fine.
  const auto minimal = Index::from_json(R"({"schemaVersion":2,"manifests":[],"annotations":null})");
  ASSERT_TRUE(minimal.ok()) << minimal.error().message;
  EXPECT_TRUE(minimal->media_type.empty());
  EXPECT_EQ(minimal->to_json(),
            R"({"manifests":[],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2})");
}

TEST(ImageConfig, MalformedDocumentsNameTheField) {
  const std::string head = R"({"architecture":"amd64","os":"linux",)";
  const std::string rootfs = R"("rootfs":{"type":"layers","diff_ids":[]})";
  const std::vector<BadDocument> cases = {
      {R"({"os":"linux",)" + rootfs + "}", "image config: architecture: missing"},
      {R"({"architecture":"amd64",)" + rootfs + "}", "image config: os: missing"},
      {R"({"architecture":"amd64","os":"linux"})", "image config: rootfs: missing"},
      {head + R"("rootfs":{"diff_ids":[]}})", "image config: rootfs.type: missing"},
      {head + R"("rootfs":{"type":"tarball"}})", R"(image config: rootfs.type: expected "layers", got "tarball")"},
      {head + R"("rootfs":{"type":"layers","diff_ids":[")" + kD0 + R"(","sha256:abc"]}})",
       R"(image config: rootfs.diff_ids[1]: invalid digest "sha256:abc")"},
      {head + R"("rootfs":{"type":"layers","diff_ids":[7]}})",
       "image config: rootfs.diff_ids[0]: expected a string, got number"},
      {head + R"("config":["USER root"],)" + rootfs + "}", "image config: config: expected an object, got array"},
      {head + R"("rootfs":"layers"})", "image config: rootfs: expected an object, got string"},
      {head + R"("config":{"Env":["A=1",2]},)" + rootfs + "}",
       "image config: config.Env[1]: expected a string, got number"},
      {head + R"("config":{"Cmd":"echo hi"},)" + rootfs + "}",
       "image config: config.Cmd: expected an array, got string"},
      {head + R"("config":{"ExposedPorts":["80/tcp"]},)" + rootfs + "}",
       "image config: config.ExposedPorts: expected an object, got array"},
      {head + R"("config":{"Healthcheck":{"Interval":"30s"}},)" + rootfs + "}",
       "image config: config.Healthcheck.Interval: expected an integer, got string"},
      {head + R"("config":{"Healthcheck":{"Retries":4294967296}},)" + rootfs + "}",
       "image config: config.Healthcheck.Retries: integer out of range"},
      {head + R"("config":{"Healthcheck":true},)" + rootfs + "}",
       "image config: config.Healthcheck: expected an object, got boolean"},
      {head + R"("config":{"ArgsEscaped":"true"},)" + rootfs + "}",
       "image config: config.ArgsEscaped: expected a boolean, got string"},
      {head + rootfs + R"(,"history":[{"created_by":"RUN x"},{"empty_layer":"yes"}]})",
       "image config: history[1].empty_layer: expected a boolean, got string"},
      {head + rootfs + R"(,"history":["RUN x"]})", "image config: history[0]: expected an object, got string"},
  };
  for (const BadDocument& bad : cases) {
    const auto config = ImageConfig::from_json(bad.json);
    ASSERT_FALSE(config.ok()) << bad.json;
    EXPECT_EQ(config.error().message, bad.error) << bad.json;
  }
}

TEST(Descriptor, JsonConversion) {
  Descriptor descriptor = blob(kOciManifest, kD0, 1613);
  descriptor.platform = Platform::parse("linux/arm/v7").value();
  descriptor.annotations["org.opencontainers.image.ref.name"] = "1.0";
  const nlohmann::json json = descriptor.to_json();
  EXPECT_EQ(json.dump(), R"({"annotations":{"org.opencontainers.image.ref.name":"1.0"},"digest":")" + kD0 +
                             R"(","mediaType":"application/vnd.oci.image.manifest.v1+json",)"
                             R"("platform":{"architecture":"arm","os":"linux","variant":"v7"},"size":1613})");
  const auto back = Descriptor::from_json(json, "index", "manifests[0]");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, descriptor);
  EXPECT_EQ(descriptor.to_json(MediaTypeFlavor::docker)["mediaType"], kDockerManifest);

  const auto bad = Descriptor::from_json(nlohmann::json{{"mediaType", "a"}, {"digest", kD0}, {"size", "1"}}, "index",
                                         "manifests[3]");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message, "index: manifests[3].size: expected an integer, got string");
}

}  // namespace
}  // namespace kiln::oci
