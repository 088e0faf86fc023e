#include "commands.h"

namespace parakeet::cli {
void add_bench(CLI::App& app) { (void)app; }
}  // namespace parakeet::cli
