// The `parakeet` program's subcommands. Argument parsing and printing only; model logic lives in src/.
#pragma once

#include <CLI/CLI.hpp>

namespace parakeet::cli {

void add_inspect(CLI::App& app);
void add_transcribe(CLI::App& app);
void add_bench(CLI::App& app);
void add_stream(CLI::App& app);
void add_parity(CLI::App& app);

}  // namespace parakeet::cli
