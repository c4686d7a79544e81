#include "oci/reference.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kiln::oci {
namespace {

const std::string kDigest = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
const std::string kRedisDigest = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";

struct Expected {
  std::string input;
  std::string domain;
  std::string path;
  std::string tag;
  std::string digest;    // empty: none
  std::string full;      // str()
  std::string familiar;  // familiar()
};

void expect_parses(const Expected& e) {
  const auto ref = Reference::parse(e.input);
  ASSERT_TRUE(ref.ok()) << e.input << ": " << ref.error().message;
  EXPECT_EQ(ref->domain, e.domain) << e.input;
  EXPECT_EQ(ref->path, e.path) << e.input;
  EXPECT_EQ(ref->tag, e.tag) << e.input;
  EXPECT_EQ(ref->digest ? ref->digest->str() : "", e.digest) << e.input;
  EXPECT_EQ(ref->str(), e.full) << e.input;
  EXPECT_EQ(ref->familiar(), e.familiar) << e.input;
  // Both printed forms parse back to the same reference.
  EXPECT_EQ(Reference::parse(ref->str()).value(), *ref) << e.input;
  EXPECT_EQ(Reference::parse(ref->familiar()).value(), *ref) << e.input;
}

// distribution/reference TestParseRepositoryInfo: familiar, full and ambiguous spellings.
TEST(Reference, NormalisesLikeDocker) {
  const std::vector<Expected> cases = {
      {"localhost/fooo", "localhost", "fooo", "latest", "", "localhost/fooo:latest", "localhost/fooo:latest"},
      {"localhost/fooo/bar", "localhost", "fooo/bar", "latest", "", "localhost/fooo/bar:latest",
       "localhost/fooo/bar:latest"},
      {"LOCALDOMAIN/fooo", "LOCALDOMAIN", "fooo", "latest", "", "LOCALDOMAIN/fooo:latest", "LOCALDOMAIN/fooo:latest"},
      {"LOCALDOMAIN/fooo/bar", "LOCALDOMAIN", "fooo/bar", "latest", "", "LOCALDOMAIN/fooo/bar:latest",
       "LOCALDOMAIN/fooo/bar:latest"},
      {"fooo/bar", "docker.io", "fooo/bar", "latest", "", "docker.io/fooo/bar:latest", "fooo/bar:latest"},
      {"docker.io/fooo/bar", "docker.io", "fooo/bar", "latest", "", "docker.io/fooo/bar:latest", "fooo/bar:latest"},
      {"index.docker.io/fooo/bar", "docker.io", "fooo/bar", "latest", "", "docker.io/fooo/bar:latest",
       "fooo/bar:latest"},
      {"ubuntu", "docker.io", "library/ubuntu", "latest", "", "docker.io/library/ubuntu:latest", "ubuntu:latest"},
      {"library/ubuntu", "docker.io", "library/ubuntu", "latest", "", "docker.io/library/ubuntu:latest",
       "ubuntu:latest"},
      {"docker.io/library/ubuntu", "docker.io", "library/ubuntu", "latest", "", "docker.io/library/ubuntu:latest",
       "ubuntu:latest"},
      {"nonlibrary/ubuntu", "docker.io", "nonlibrary/ubuntu", "latest", "", "docker.io/nonlibrary/ubuntu:latest",
       "nonlibrary/ubuntu:latest"},
      {"other/library", "docker.io", "other/library", "latest", "", "docker.io/other/library:latest",
       "other/library:latest"},
      {"127.0.0.1:8000/private/moonbase", "127.0.0.1:8000", "private/moonbase", "latest", "",
       "127.0.0.1:8000/private/moonbase:latest", "127.0.0.1:8000/private/moonbase:latest"},
      {"127.0.0.1:8000/privatebase", "127.0.0.1:8000", "privatebase", "latest", "", "127.0.0.1:8000/privatebase:latest",
       "127.0.0.1:8000/privatebase:latest"},
      {"example.com/private/moonbase", "example.com", "private/moonbase", "latest", "",
       "example.com/private/moonbase:latest", "example.com/private/moonbase:latest"},
      {"example.com:8000/privatebasee", "example.com:8000", "privatebasee", "latest", "",
       "example.com:8000/privatebasee:latest", "example.com:8000/privatebasee:latest"},
      {"ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", "",
       "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"},
      {"index.docker.io/library/ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", "latest", "",
       "docker.io/library/ubuntu-12.04-base:latest", "ubuntu-12.04-base:latest"},
      {"docker.io/foo", "docker.io", "library/foo", "latest", "", "docker.io/library/foo:latest", "foo:latest"},
      {"library/foo/bar", "docker.io", "library/foo/bar", "latest", "", "docker.io/library/foo/bar:latest",
       "library/foo/bar:latest"},
      {"store/foo/bar", "docker.io", "store/foo/bar", "latest", "", "docker.io/store/foo/bar:latest",
       "store/foo/bar:latest"},
      {"Foo/bar", "Foo", "bar", "latest", "", "Foo/bar:latest", "Foo/bar:latest"},
      {"FOO/bar", "FOO", "bar", "latest", "", "FOO/bar:latest", "FOO/bar:latest"},
  };
  for (const Expected& c : cases) expect_parses(c);
}

// distribution/reference TestNormalizedSplitHostname and TestReferenceParse, read as Docker's CLI reads them.
TEST(Reference, DomainDetection) {
  const std::vector<Expected> cases = {
      {"test.com/foo", "test.com", "foo", "latest", "", "test.com/foo:latest", "test.com/foo:latest"},
      {"test_com/foo", "docker.io", "test_com/foo", "latest", "", "docker.io/test_com/foo:latest",
       "test_com/foo:latest"},
      {"docker/migrator", "docker.io", "docker/migrator", "latest", "", "docker.io/docker/migrator:latest",
       "docker/migrator:latest"},
      {"test.com:8080/foo", "test.com:8080", "foo", "latest", "", "test.com:8080/foo:latest",
       "test.com:8080/foo:latest"},
      {"test-com:8080/foo", "test-com:8080", "foo", "latest", "", "test-com:8080/foo:latest",
       "test-com:8080/foo:latest"},
      {"xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", "latest", "", "xn--n3h.com:18080/foo:latest",
       "xn--n3h.com:18080/foo:latest"},
      {"test_com", "docker.io", "library/test_com", "latest", "", "docker.io/library/test_com:latest",
       "test_com:latest"},
      // A single element is never a domain: "test.com:5000" is the image test.com, tag 5000.
      {"test.com:tag", "docker.io", "library/test.com", "tag", "", "docker.io/library/test.com:tag", "test.com:tag"},
      {"test.com:5000", "docker.io", "library/test.com", "5000", "", "docker.io/library/test.com:5000",
       "test.com:5000"},
      {"localhost", "docker.io", "library/localhost", "latest", "", "docker.io/library/localhost:latest",
       "localhost:latest"},
      {"localhost:5000", "docker.io", "library/localhost", "5000", "", "docker.io/library/localhost:5000",
       "localhost:5000"},
      {"192.168.1.1", "docker.io", "library/192.168.1.1", "latest", "", "docker.io/library/192.168.1.1:latest",
       "192.168.1.1:latest"},
      {"192.168.1.1:5000", "docker.io", "library/192.168.1.1", "5000", "", "docker.io/library/192.168.1.1:5000",
       "192.168.1.1:5000"},
      {"192.168.1.1/repo", "192.168.1.1", "repo", "latest", "", "192.168.1.1/repo:latest", "192.168.1.1/repo:latest"},
      {"192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", "", "192.168.1.1:5000/repo:5050",
       "192.168.1.1:5000/repo:5050"},
      {"foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", "", "docker.io/library/foo_bar.com:8080",
       "foo_bar.com:8080"},
      {"foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", "", "docker.io/foo/foo_bar.com:8080",
       "foo/foo_bar.com:8080"},
      {"test:5000/repo", "test:5000", "repo", "latest", "", "test:5000/repo:latest", "test:5000/repo:latest"},
      {"test:5000/repo:tag", "test:5000", "repo", "tag", "", "test:5000/repo:tag", "test:5000/repo:tag"},
      {"sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", "some-long-tag", "",
       "sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com/bar/baz/quux:some-long-tag"},
      {"b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app", "test.example.com",
       "", "b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io/test.example.com/my-app:test.example.com"},
      {"lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", "",
       "docker.io/library/lowercase:Uppercase", "lowercase:Uppercase"},
      {"[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", "", "[2001:db8::1]/repo:latest",
       "[2001:db8::1]/repo:latest"},
      {"[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", "",
       "[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]/repo:tag"},
      {"[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", "latest", "", "[2001:db8::]:5000/repo:latest",
       "[2001:db8::]:5000/repo:latest"},
      {"[::1]:5000/repo", "[::1]:5000", "repo", "latest", "", "[::1]:5000/repo:latest", "[::1]:5000/repo:latest"},
      {"docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "docker.io",
       "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", "latest", "",
       "docker.io/library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a:latest",
       "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a:latest"},
      {"dbcc1", "docker.io", "library/dbcc1", "latest", "", "docker.io/library/dbcc1:latest", "dbcc1:latest"},
  };
  for (const Expected& c : cases) expect_parses(c);
}

TEST(Reference, TagsAndDigests) {
  const std::vector<Expected> cases = {
      {"redis@" + kRedisDigest, "docker.io", "library/redis", "", kRedisDigest,
       "docker.io/library/redis@" + kRedisDigest, "redis@" + kRedisDigest},
      {"dmcgowan/myapp@" + kRedisDigest, "docker.io", "dmcgowan/myapp", "", kRedisDigest,
       "docker.io/dmcgowan/myapp@" + kRedisDigest, "dmcgowan/myapp@" + kRedisDigest},
      {"busybox:latest@" + kDigest, "docker.io", "library/busybox", "latest", kDigest,
       "docker.io/library/busybox:latest@" + kDigest, "busybox:latest@" + kDigest},
      {"test:5000/repo@" + kDigest, "test:5000", "repo", "", kDigest, "test:5000/repo@" + kDigest,
       "test:5000/repo@" + kDigest},
      {"test:5000/repo:tag@" + kDigest, "test:5000", "repo", "tag", kDigest, "test:5000/repo:tag@" + kDigest,
       "test:5000/repo:tag@" + kDigest},
      {"xn--7o8h.com/myimage:xn--7o8h.com@" + kDigest, "xn--7o8h.com", "myimage", "xn--7o8h.com", kDigest,
       "xn--7o8h.com/myimage:xn--7o8h.com@" + kDigest, "xn--7o8h.com/myimage:xn--7o8h.com@" + kDigest},
      {"[2001:db8::1]:5000/repo:tag@" + kDigest, "[2001:db8::1]:5000", "repo", "tag", kDigest,
       "[2001:db8::1]:5000/repo:tag@" + kDigest, "[2001:db8::1]:5000/repo:tag@" + kDigest},
      {"localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", "", "localhost:5000/a/b:tag",
       "localhost:5000/a/b:tag"},
      {"app:" + std::string(128, 'x'), "docker.io", "library/app", std::string(128, 'x'), "",
       "docker.io/library/app:" + std::string(128, 'x'), "app:" + std::string(128, 'x')},
      {"app:_x.Y-z", "docker.io", "library/app", "_x.Y-z", "", "docker.io/library/app:_x.Y-z", "app:_x.Y-z"},
  };
  for (const Expected& c : cases) expect_parses(c);
}

// A digest names content; kiln never stores it as a name (see FROM x@digest).
TEST(Reference, TagNamesRefuseDigests) {
  for (const std::string& text : {"x@" + kDigest, "x:t@" + kDigest, "localhost:5000/x@" + kDigest}) {
    auto tag = Reference::parse_tag(text);
    ASSERT_FALSE(tag.ok()) << text;
    EXPECT_EQ(tag.error().message, "refusing to create a tag with a digest reference: " + text);
  }
  EXPECT_FALSE(Reference::parse_tag("X:t").ok());  // parse()'s own errors still come first
  auto plain = Reference::parse_tag("localhost:5000/x:t");
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_EQ(plain->str(), "localhost:5000/x:t");
}

TEST(Reference, ValidNamesFromDistribution) {
  const std::vector<std::string> valid = {"docker/docker",
                                          "library/debian",
                                          "debian",
                                          "localhost/library/debian",
                                          "localhost/debian",
                                          "LOCALDOMAIN/library/debian",
                                          "LOCALDOMAIN/debian",
                                          "docker.io/docker/docker",
                                          "docker.io/library/debian",
                                          "docker.io/debian",
                                          "index.docker.io/docker/docker",
                                          "index.docker.io/library/debian",
                                          "index.docker.io/debian",
                                          "127.0.0.1:5000/docker/docker",
                                          "127.0.0.1:5000/library/debian",
                                          "127.0.0.1:5000/debian",
                                          "192.168.0.1",
                                          "192.168.0.1:80",
                                          "192.168.0.1:8/debian",
                                          "192.168.0.2:25000/debian",
                                          "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
                                          "[fc00::1]:5000/docker",
                                          "[fc00::1]:5000/docker/docker",
                                          "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
                                          "Docker/docker",
                                          "DOCKER/docker",
                                          "docker-rules/docker",
                                          "docker---rules/docker",
                                          "doc/docker",
                                          "d/docker",
                                          "jess/t",
                                          "dock__er/docker"};
  for (const std::string& name : valid) {
    const auto ref = Reference::parse(name);
    EXPECT_TRUE(ref.ok()) << name << ": " << ref.error().message;
  }
  // The longest paths allowed: 255 characters.
  std::string deep;
  for (int i = 0; i < 127; ++i) deep += "a/";
  deep += "a";
  ASSERT_EQ(deep.size(), 255u);
  const auto longest = Reference::parse(deep + ":tag-puts-this-over-max");
  ASSERT_TRUE(longest.ok()) << longest.error().message;
  EXPECT_EQ(longest->path, deep);
  EXPECT_EQ(Reference::parse("example.com/" + std::string(255, 'a') + ":tag")->path, std::string(255, 'a'));
}

TEST(Reference, InvalidReferencesSayWhy) {
  const std::string hex64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";
  const std::string prefix = "invalid reference format: ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "repository name must have at least one component"},
      {hex64, "a 64-character hexadecimal string is an image ID, not a repository name"},
      {"https://github.com/docker/docker", R"(invalid domain "https:")"},
      {"docker/Docker", "repository name must be lowercase"},
      {"docker.io/docker/Docker", "repository name must be lowercase"},
      {"Uppercase:tag", "repository name must be lowercase"},
      {"test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"},
      {"-docker", R"(invalid repository name component "-docker")"},
      {"-docker/docker", R"(invalid repository name component "-docker")"},
      {"docker-/docker", R"(invalid repository name component "docker-")"},
      {"-docker-/docker", R"(invalid repository name component "-docker-")"},
      {"-docker.io/docker/docker", R"(invalid domain "-docker.io")"},
      {"docker///docker", "repository name has an empty component"},
      {"docker.io/docker///docker", "repository name has an empty component"},
      {"docker/", "repository name has an empty component"},
      {"localhost/", "repository name has an empty component"},
      {"____/____", R"(invalid repository name component "____")"},
      {"_docker/_docker", R"(invalid repository name component "_docker")"},
      {"dock..er/docker", R"(invalid domain "dock..er")"},  // has a dot: read as a host name
      {"dock_.er/docker", R"(invalid domain "dock_.er")"},
      {"dock-.er/docker", R"(invalid domain "dock-.er")"},
      {"dock___er/docker", R"(invalid repository name component "dock___er")"},
      {"aa/asdf$$^/aa", R"(invalid repository name component "asdf$$^")"},
      {"[fc00::1]", R"(invalid repository name component "[fc00")"},  // a single element is never a domain
      {"[fc00::1]:5000", R"(invalid repository name component "[fc00")"},
      {"[2001:db8::1]:tag", R"(invalid repository name component "[2001")"},
      {"fc00::1:5000/debian", R"(invalid domain "fc00::1:5000")"},
      {"[fe80::1%eth0]:5000/debian", R"(invalid domain "[fe80::1%eth0]:5000")"},
      {"[2001:db8:3:4::192.0.2.33]:5000/debian", R"(invalid domain "[2001:db8:3:4::192.0.2.33]:5000")"},
      {"example.com:/app", R"(invalid domain "example.com:")"},
      {"example.com:80a/app", R"(invalid domain "example.com:80a")"},
      {":justtag", "repository name has an empty component"},
      {"@" + kDigest, "repository name has an empty component"},
      {"app:", R"(invalid tag "")"},
      {"app:-foo", R"(invalid tag "-foo")"},
      {"app:.foo", R"(invalid tag ".foo")"},
      {"app:a:b", R"(invalid tag "a:b")"},
      {"app:" + std::string(129, 'x'), "invalid tag \"" + std::string(129, 'x') + "\""},
      {"repo@sha256:ffffffffffffffffffffffffffffffffff",
       R"(invalid digest "sha256:ffffffffffffffffffffffffffffffffff")"},
      {"validname@invaliddigest:" + std::string(64, 'f'),
       "invalid digest \"invaliddigest:" + std::string(64, 'f') + "\""},
      {"app@", R"(invalid digest "")"},
      {"app@" + kDigest + "@" + kDigest, "invalid digest \"" + kDigest + "@" + kDigest + "\""},
      {"domain/" + std::string(256, 'a') + ":tag", "repository name must not be more than 255 characters"},
      {"this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_"
       "its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_"
       "not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
       "repository name must not be more than 255 characters"},
      {"app name", R"(invalid repository name component "app name")"},
  };
  for (const auto& [input, reason] : cases) {
    const auto ref = Reference::parse(input);
    ASSERT_FALSE(ref.ok()) << input << " parsed as " << ref->str();
    EXPECT_EQ(ref.error().message, prefix + reason) << input;
  }
}

TEST(Reference, RepositoryAndRegistryHost) {
  const Reference hub = Reference::parse("ubuntu:22.04").value();
  EXPECT_EQ(hub.repository(), "docker.io/library/ubuntu");
  EXPECT_EQ(hub.familiar_repository(), "ubuntu");
  EXPECT_EQ(hub.registry_host(), "registry-1.docker.io");
  EXPECT_EQ(Reference::parse("index.docker.io/user/app").value().registry_host(), "registry-1.docker.io");
  const Reference local = Reference::parse("localhost:5000/a/b:tag").value();
  EXPECT_EQ(local.repository(), "localhost:5000/a/b");
  EXPECT_EQ(local.familiar_repository(), "localhost:5000/a/b");
  EXPECT_EQ(local.registry_host(), "localhost:5000");
  EXPECT_EQ(Reference::parse("ghcr.io/org/app@" + kDigest).value().registry_host(), "ghcr.io");
  EXPECT_EQ(Reference::parse("[::1]:5000/app").value().registry_host(), "[::1]:5000");
  EXPECT_EQ(Reference::parse("user/app").value().familiar_repository(), "user/app");
  // Docker's own display quirk, kept: a Docker Hub namespace with a dot looks like a host once shortened.
  EXPECT_EQ(Reference::parse("docker.io/a.b/app").value().familiar(), "a.b/app:latest");
}

}  // namespace
}  // namespace kiln::oci
