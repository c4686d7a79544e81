// Reading and poking a store's kiln.db directly, for the schema and migration tests.
#pragma once

#include <sqlite3.h>

#include <filesystem>
#include <string>
#include <vector>

namespace kiln::cache {

/// Runs `statement` (one or more SQL statements) on root/kiln.db; returns the first column
/// of every result row ("NULL" for nulls); empty when the database cannot be opened.
inline std::vector<std::string> sql_column(const std::filesystem::path& root, const std::string& statement) {
  sqlite3* db = nullptr;
  std::vector<std::string> rows;
  if (sqlite3_open((root / "kiln.db").c_str(), &db) != SQLITE_OK) return rows;
  sqlite3_exec(
      db, statement.c_str(),
      [](void* out, int, char** values, char**) {
        static_cast<std::vector<std::string>*>(out)->push_back(values[0] ? values[0] : "NULL");
        return 0;
      },
      &rows, nullptr);
  sqlite3_close(db);
  return rows;
}

}  // namespace kiln::cache
