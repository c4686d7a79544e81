// Layer write throughput: kiln's write_layer (PAX tar + parallel gzip, digests in the
// same pass) against `tar -c | pigz -p <cores>` on the same tree, in one run.
//
//   layer_bench [TREE_DIR] [SIZE_MIB]
// Makes TREE_DIR (default /var/tmp/kiln-layer-bench) holding SIZE_MIB (default 1024) MiB
// of mixed files if it is not there yet: many small text-like files, some mid-size ones,
// a few large poorly compressible ones, symlinks and hardlinks. Then times each writer
// three times (page cache warm after the first run of each) and prints MB/s and the ratio.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "cache/layer_writer.h"

namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, std::size_t size, std::mt19937_64& rng, bool compressible) {
  std::string data(size, '\0');
  if (compressible) {
    static const char kWords[] = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod\n";
    for (std::size_t i = 0; i < size; ++i) data[i] = kWords[(i + rng() % 3) % (sizeof kWords - 1)];
  } else {
    for (std::size_t i = 0; i + 8 <= size; i += 8) {
      const std::uint64_t v = rng();
      std::memcpy(&data[i], &v, 8);
    }
  }
  std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::uint64_t make_tree(const fs::path& root, std::uint64_t target_bytes) {
  std::mt19937_64 rng(42);
  std::uint64_t total = 0;
  for (int dir = 0; total < target_bytes; ++dir) {
    const fs::path d = root / ("dir" + std::to_string(dir));
    fs::create_directories(d / "sub");
    for (int i = 0; i < 200 && total < target_bytes; ++i) {  // small text-like files
      const std::size_t size = 512 + rng() % 16384;
      write_file(d / "sub" / ("f" + std::to_string(i) + ".txt"), size, rng, true);
      total += size;
    }
    for (int i = 0; i < 8 && total < target_bytes; ++i) {  // mid-size, half compressible
      const std::size_t size = (1 + rng() % 4) << 20;
      write_file(d / ("m" + std::to_string(i) + ".bin"), size, rng, i % 2 == 0);
      total += size;
    }
    if (dir % 4 == 0 && total < target_bytes) {  // a large, incompressible file
      const std::size_t size = 32 << 20;
      write_file(d / "large.bin", size, rng, false);
      total += size;
    }
    fs::create_symlink("sub/f0.txt", d / "link");
    fs::create_hard_link(d / "sub" / "f1.txt", d / "hard");
  }
  return total;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path tree = argc > 1 ? argv[1] : "/var/tmp/kiln-layer-bench";
  const std::uint64_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (!fs::exists(tree / ".complete")) {
    fs::remove_all(tree);
    fs::create_directories(tree);
    std::printf("making a %llu MiB tree in %s ...\n", static_cast<unsigned long long>(mib), tree.c_str());
    make_tree(tree, mib << 20);
    std::ofstream(tree / ".complete");
  }
  const std::string out = "/var/tmp/kiln-layer-bench.out";
  double best_kiln = 1e9, best_pigz = 1e9;
  std::uint64_t tar_bytes = 0;
  for (int run = 0; run < 3; ++run) {
    const int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    kiln::cache::LayerWriteOptions options;
    options.threads = static_cast<int>(cores);
    const auto start = std::chrono::steady_clock::now();
    auto layer = kiln::cache::write_layer(tree, fd, options);
    best_kiln = std::min(best_kiln, seconds_since(start));
    close(fd);
    if (!layer.ok()) {
      std::fprintf(stderr, "write_layer: %s\n", layer.error().message.c_str());
      return 1;
    }
    const auto pigz_start = std::chrono::steady_clock::now();
    const std::string command = "tar -C '" + tree.string() + "' -cf - . | pigz -6 -p " + std::to_string(cores) +
                                " > " + out + ".pigz";
    if (std::system(command.c_str()) != 0) return 1;
    best_pigz = std::min(best_pigz, seconds_since(pigz_start));
    tar_bytes = static_cast<std::uint64_t>(fs::file_size(out));
  }
  std::uint64_t tree_bytes = 0;
  for (const auto& entry : fs::recursive_directory_iterator(tree)) {
    if (entry.is_regular_file()) tree_bytes += entry.file_size();
  }
  const double mb = static_cast<double>(tree_bytes) / 1e6;
  std::printf("tree: %.0f MB of file data, %u cores\n", mb, cores);
  std::printf("kiln write_layer (tar+gzip, digests): %6.2f s  %7.1f MB/s  -> %.0f MB\n", best_kiln, mb / best_kiln,
              static_cast<double>(tar_bytes) / 1e6);
  std::printf("tar | pigz -6 -p %u:                   %6.2f s  %7.1f MB/s  -> %.0f MB\n", cores, best_pigz,
              mb / best_pigz, static_cast<double>(fs::file_size(out + ".pigz")) / 1e6);
  std::printf("ratio kiln/pigz time: %.2f (below 1 means kiln is faster)\n", best_kiln / best_pigz);
  fs::remove(out);
  fs::remove(out + ".pigz");
  return 0;
}
