// container.json, version 1: one JSON object, written by kiln run and kiln rm.
//
//   {
//     "version": 1,
//     "id": "<64 hex>",
//     "image": "busybox",                       the image as the user named it
//     "manifest_digest": "sha256:…",            the ref @container/<id> points here
//     "config_digest": "sha256:…",              the image id
//     "command": ["sh", "-c", "echo hi"],
//     "created": "2026-11-22T19:08:01.123456789Z",   RFC 3339, UTC
//     "status": "created" | "running" | "exited",
//     "exit_code": 0,                           only once exited and known
//     "finished": "2026-11-22T19:08:02.5Z",     only with exit_code
//     "pid": 1234, "pid_start_time": 987654,    only while running
//     "snapshotter": "overlay" | "copy",
//     "diff_ids": ["sha256:…", …],              bottom first
//     "lower_dirs": ["/var/lib/kiln/snapshots/…", …]   top first
//   }
//
// A reader rejects another version: a newer kiln's container is not guessed at.
#include "cache/containers.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <system_error>

#include "common/fd.h"
#include "common/output_file.h"
#include "common/remove_tree.h"

namespace kiln::cache {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::system_clock;

namespace {

constexpr int kFormatVersion = 1;
constexpr std::string_view kRecordFile = "container.json";
constexpr std::string_view kRemovingPrefix = ".removing-";

bool is_container_id(std::string_view id) {
  return id.size() == 64 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// RFC 3339 in UTC with nanoseconds, as Docker writes its times.
std::string format_time(Clock::time_point time) {
  const auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch());
  const std::time_t seconds = static_cast<std::time_t>(since_epoch.count() / 1'000'000'000);
  const long nanoseconds = static_cast<long>(since_epoch.count() % 1'000'000'000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[64];
  std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, nanoseconds);
  return text;
}

// The inverse of format_time (any number of fraction digits, 'Z' only).
std::optional<Clock::time_point> parse_time(const std::string& text) {
  std::tm utc{};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &utc.tm_year, &utc.tm_mon, &utc.tm_mday, &utc.tm_hour,
                  &utc.tm_min, &utc.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  std::int64_t nanoseconds = 0;
  std::size_t at = static_cast<std::size_t>(consumed);
  if (at < text.size() && text[at] == '.') {
    std::int64_t scale = 100'000'000;
    for (++at; at < text.size() && text[at] >= '0' && text[at] <= '9'; ++at, scale /= 10) {
      nanoseconds += (text[at] - '0') * scale;
    }
  }
  if (at + 1 != text.size() || text[at] != 'Z') return std::nullopt;
  const std::time_t seconds = ::timegm(&utc);
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(std::chrono::seconds(seconds) +
                                                                       std::chrono::nanoseconds(nanoseconds)));
}

const char* status_name(ContainerStatus status) {
  switch (status) {
    case ContainerStatus::created: return "created";
    case ContainerStatus::running: return "running";
    case ContainerStatus::exited: return "exited";
  }
  return "created";
}

Result<void> make_dir(const fs::path& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0) return sys_error("mkdir", path.string());
  // mkdir's mode is filtered by the umask; a rootfs must be exactly 0755.
  if (::chmod(path.c_str(), mode) != 0) return sys_error("chmod", path.string());
  return {};
}

// The names in `dir`; none when it does not exist yet (no container was ever made).
Result<std::vector<std::string>> list_names(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::vector<std::string>();
    return sys_error("open", dir.string());
  }
  const UniqueFd directory(fd);
  return list_directory(directory.get(), dir.string());
}

// A running record whose kiln process is gone: nobody will record how it ended.
void apply_liveness(ContainerRecord& record) {
  if (record.status != ContainerStatus::running) return;
  if (record.pid > 0 && process_start_time(record.pid) == record.pid_start_time) return;
  record.status = ContainerStatus::exited;
  record.exit_code.reset();
  record.finished.reset();
  record.pid = 0;
  record.pid_start_time = 0;
}

Result<std::string> read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    return sys_error("open", path.string(), error != 0 ? error : ENOENT);
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return sys_error("read", path.string());
  return text.str();
}

}  // namespace

std::string container_ref(std::string_view id) { return "@container/" + std::string(id); }

std::string new_container_id() {
  std::random_device device;
  std::string id;
  id.reserve(64);
  static constexpr char kHex[] = "0123456789abcdef";
  while (id.size() < 64) {
    std::uint32_t bits = device();
    for (int i = 0; i < 8; ++i, bits >>= 4) id.push_back(kHex[bits & 0xf]);
  }
  return id;
}

std::uint64_t process_start_time(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  // The command name (field 2) is in parentheses and may hold spaces or ')': the fields
  // after it are counted from the last ')'.
  const std::size_t name_end = stat.rfind(')');
  if (name_end == std::string::npos) return 0;
  std::istringstream fields(stat.substr(name_end + 1));
  std::string field;
  for (int index = 3; fields >> field; ++index) {
    if (index == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

std::string container_record_to_json(const ContainerRecord& record) {
  json document = {
      {"version", kFormatVersion},
      {"id", record.id},
      {"image", record.image},
      {"manifest_digest", record.manifest_digest},
      {"config_digest", record.config_digest},
      {"command", record.command},
      {"created", format_time(record.created)},
      {"status", status_name(record.status)},
  };
  if (record.exit_code) document["exit_code"] = *record.exit_code;
  if (record.finished) document["finished"] = format_time(*record.finished);
  if (record.status == ContainerStatus::running) {
    document["pid"] = record.pid;
    document["pid_start_time"] = record.pid_start_time;
  }
  document["snapshotter"] = record.snapshotter == Snapshotter::copy ? "copy" : "overlay";
  document["diff_ids"] = record.diff_ids;
  json lower_dirs = json::array();
  for (const fs::path& dir : record.lower_dirs) lower_dirs.push_back(dir.string());
  document["lower_dirs"] = std::move(lower_dirs);
  return document.dump(2) + "\n";
}

Result<ContainerRecord> container_record_from_json(std::string_view text, std::string_view source) {
  const std::string where(source);
  const json document = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!document.is_object()) return Error{where + ": not a JSON object"};
  if (document.value("version", 0) != kFormatVersion) {
    return Error{where + ": unsupported container record version " + document.value("version", json()).dump()};
  }
  try {
    ContainerRecord record;
    record.id = document.at("id").get<std::string>();
    if (!is_container_id(record.id)) return Error{where + ": invalid container id \"" + record.id + "\""};
    record.image = document.at("image").get<std::string>();
    record.manifest_digest = document.at("manifest_digest").get<std::string>();
    record.config_digest = document.at("config_digest").get<std::string>();
    record.command = document.at("command").get<std::vector<std::string>>();
    const auto created = parse_time(document.at("created").get<std::string>());
    if (!created) return Error{where + ": invalid created time"};
    record.created = *created;
    const std::string status = document.at("status").get<std::string>();
    if (status == "created") {
      record.status = ContainerStatus::created;
    } else if (status == "running") {
      record.status = ContainerStatus::running;
    } else if (status == "exited") {
      record.status = ContainerStatus::exited;
    } else {
      return Error{where + ": unknown status \"" + status + "\""};
    }
    if (document.contains("exit_code")) record.exit_code = document.at("exit_code").get<int>();
    if (document.contains("finished")) {
      record.finished = parse_time(document.at("finished").get<std::string>());
      if (!record.finished) return Error{where + ": invalid finished time"};
    }
    record.pid = document.value("pid", 0);
    record.pid_start_time = document.value("pid_start_time", std::uint64_t{0});
    const std::string snapshotter = document.at("snapshotter").get<std::string>();
    if (snapshotter != "overlay" && snapshotter != "copy") {
      return Error{where + ": unknown snapshotter \"" + snapshotter + "\""};
    }
    record.snapshotter = snapshotter == "copy" ? Snapshotter::copy : Snapshotter::overlay;
    record.diff_ids = document.at("diff_ids").get<std::vector<std::string>>();
    for (const std::string& dir : document.at("lower_dirs").get<std::vector<std::string>>()) {
      record.lower_dirs.emplace_back(dir);
    }
    return record;
  } catch (const json::exception& e) {
    // A missing field or one of the wrong type; nlohmann says which.
    return Error{where + ": " + e.what()};
  }
}

ContainerStore::ContainerStore(fs::path store_root) : containers_dir_(std::move(store_root) / "containers") {}

fs::path ContainerStore::dir(std::string_view id) const { return containers_dir_ / id; }

Result<void> ContainerStore::create(const ContainerRecord& record) {
  if (!is_container_id(record.id)) return Error{"create container: invalid id \"" + record.id + "\""};
  if (::mkdir(containers_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return sys_error("mkdir", containers_dir_.string());
  }
  const fs::path container = dir(record.id);
  if (::mkdir(container.c_str(), 0700) != 0) return sys_error("mkdir", container.string());
  if (record.snapshotter == Snapshotter::overlay) {
    if (auto made = make_dir(upper_dir(record.id), 0755); !made) return made;
    if (auto made = make_dir(work_dir(record.id), 0700); !made) return made;
  } else {
    if (auto made = make_dir(rootfs_dir(record.id), 0755); !made) return made;
  }
  if (auto made = make_dir(state_dir(record.id), 0700); !made) return made;
  return replace_file(container / kRecordFile, container_record_to_json(record), 0600);
}

Result<ContainerRecord> ContainerStore::get(std::string_view id_or_prefix) const {
  const std::string wanted(id_or_prefix);
  if (wanted.empty()) return Error{"no such container: \"\""};
  auto names = list_names(containers_dir_);
  if (!names) return names.error();
  std::optional<std::string> match;
  for (const std::string& name : *names) {
    if (!is_container_id(name) || !name.starts_with(wanted)) continue;
    if (name == wanted) {  // a full id wins over being a prefix of others (it can't be)
      match = name;
      break;
    }
    if (match) return Error{"multiple IDs found with provided prefix: " + wanted};
    match = name;
  }
  if (!match) return Error{"no such container: " + wanted};
  const fs::path path = dir(*match) / kRecordFile;
  auto text = read_text(path);
  if (!text) return text.error();
  auto record = container_record_from_json(*text, path.string());
  if (!record) return record.error();
  apply_liveness(*record);
  return record;
}

Result<std::vector<ContainerRecord>> ContainerStore::list() const {
  auto names = list_names(containers_dir_);
  if (!names) return names.error();
  std::vector<ContainerRecord> records;
  for (const std::string& name : *names) {
    if (name.starts_with(kRemovingPrefix)) {
      (void)remove_tree(containers_dir_ / name);  // a crashed remove(); best effort
      continue;
    }
    if (!is_container_id(name)) continue;
    const fs::path path = dir(name) / kRecordFile;
    auto text = read_text(path);
    if (!text) continue;  // create() died before writing it, or remove() got there first
    auto record = container_record_from_json(*text, path.string());
    if (!record) continue;
    apply_liveness(*record);
    records.push_back(std::move(record).value());
  }
  std::sort(records.begin(), records.end(), [](const ContainerRecord& a, const ContainerRecord& b) {
    return a.created != b.created ? a.created > b.created : a.id < b.id;
  });
  return records;
}

Result<void> ContainerStore::update(const ContainerRecord& record) {
  if (!is_container_id(record.id)) return Error{"update container: invalid id \"" + record.id + "\""};
  const fs::path container = dir(record.id);
  struct stat st;
  if (::stat(container.c_str(), &st) != 0) {
    if (errno == ENOENT) return Error{"no such container: " + record.id};
    return sys_error("stat", container.string());
  }
  return replace_file(container / kRecordFile, container_record_to_json(record), 0600);
}

Result<void> ContainerStore::remove(std::string_view id) {
  if (!is_container_id(id)) return Error{"remove container: invalid id \"" + std::string(id) + "\""};
  const fs::path container = dir(id);
  const fs::path removing = containers_dir_ / (std::string(kRemovingPrefix) + std::string(id));
  // A leftover of an earlier remove() that crashed after its rename would block ours.
  if (auto leftover = remove_tree(removing); !leftover) return leftover.error();
  if (::rename(container.c_str(), removing.c_str()) != 0 && errno != ENOENT) {
    return sys_error("rename", container.string());
  }
  if (auto removed = remove_tree(removing); !removed) return removed.error();
  return {};
}

}  // namespace kiln::cache
