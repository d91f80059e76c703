// C++17 over the C header, with RAII wrappers: handles are freed by
// destructors, errors become exceptions. Run by cli/tests/c_abi.rs with the
// master address as argv[1].
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "eddy.h"

namespace eddy {

struct Error : std::runtime_error {
  int code;
  Error(int c, const char *what) : std::runtime_error(std::string(what) + " (" + eddy_last_error_message() + ")"), code(c) {}
};

inline void check(int rc, const char *what) {
  if (rc != EDDY_OK) throw Error(rc, what);
}

struct ClientDeleter { void operator()(eddy_client_t *c) const { eddy_disconnect(c); } };
struct FileDeleter { void operator()(eddy_file_t *f) const { eddy_close(f); } };
struct ViewDeleter { void operator()(eddy_view_t *v) const { eddy_view_release(v); } };
using Client = std::unique_ptr<eddy_client_t, ClientDeleter>;
using File = std::unique_ptr<eddy_file_t, FileDeleter>;
using View = std::unique_ptr<eddy_view_t, ViewDeleter>;

inline Client connect(const std::string &master) {
  eddy_client_t *c = nullptr;
  check(eddy_connect(master.c_str(), nullptr, nullptr, 0, &c), "connect");
  return Client(c);
}

inline void write_file(const Client &c, const std::string &path, const std::vector<unsigned char> &data) {
  eddy_file_t *raw = nullptr;
  check(eddy_create(c.get(), path.c_str(), EDDY_WRITE_MUST_CACHE, 0, &raw), "create");
  File f(raw);
  check(eddy_write(f.get(), data.data(), data.size()), "write");
  // Closing completes the file; report its error instead of dropping it.
  check(eddy_close(f.release()), "close");
}

inline std::vector<unsigned char> read_file(const Client &c, const std::string &path) {
  eddy_file_t *raw = nullptr;
  check(eddy_open(c.get(), path.c_str(), EDDY_READ_CACHE, &raw), "open");
  File f(raw);
  uint64_t len = 0;
  check(eddy_file_length(f.get(), &len), "length");
  std::vector<unsigned char> out(len);
  size_t got = 0;
  check(eddy_pread(f.get(), out.data(), out.size(), 0, &got), "pread");
  out.resize(got);
  return out;
}

}  // namespace eddy

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  try {
    auto c = eddy::connect(argv[1]);
    std::vector<unsigned char> data(2500000);
    for (size_t i = 0; i < data.size(); i++) data[i] = static_cast<unsigned char>(i * 7 % 253);
    eddy::write_file(c, "/cpp.bin", data);
    if (eddy::read_file(c, "/cpp.bin") != data) { std::fprintf(stderr, "bytes differ\n"); return 1; }
    {
      eddy_file_t *raw = nullptr;
      eddy::check(eddy_open(c.get(), "/cpp.bin", EDDY_READ_CACHE, &raw), "open");
      eddy::File f(raw);
      eddy_view_t *vraw = nullptr;
      const uint8_t *p = nullptr;
      eddy::check(eddy_map(f.get(), 0, 4096, &vraw, &p), "map");
      eddy::View v(vraw);
      if (std::memcmp(p, data.data(), 4096) != 0) { std::fprintf(stderr, "view differs\n"); return 1; }
    }
    try {
      eddy::read_file(c, "/missing");
      std::fprintf(stderr, "no exception for a missing file\n");
      return 1;
    } catch (const eddy::Error &e) {
      if (e.code != EDDY_ERR_NOT_FOUND) { std::fprintf(stderr, "wrong code %d\n", e.code); return 1; }
    }
    eddy::check(eddy_delete(c.get(), "/cpp.bin", 0), "delete");
  } catch (const std::exception &e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::printf("all C++ checks passed\n");
  return 0;
}
