// parakeet: command-line front end. Every error ends as one line on stderr and a non-zero exit.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
    CLI::App app{"parakeet: NVIDIA Parakeet (FastConformer + TDT/RNNT) speech recognition"};
    app.set_version_flag("--version", std::string("parakeet ") + PARAKEET_VERSION);
    app.require_subcommand(1);
    parakeet::cli::add_inspect(app);
    parakeet::cli::add_transcribe(app);
    parakeet::cli::add_stream(app);
    parakeet::cli::add_parity(app);
    parakeet::cli::add_bench(app);
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
        known = known || (argc > 1 && sub->get_name() == argv[1]);
    if (argc > 1 && argv[1][0] != '-' && !known) {
        std::fprintf(stderr, "parakeet: unknown command '%s' (commands: inspect, transcribe, stream, parity, bench)\n",
                     argv[1]);
        return 2;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e);
        std::fprintf(stderr, "parakeet: %s (see --help)\n", e.what());
        return 2;
    } catch (const parakeet::Error& e) {
        std::fprintf(stderr, "parakeet: %s\n", e.what());
        return e.code() == parakeet::ErrorCode::kInvalidArgument ? 2 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "parakeet: %s\n", e.what());
        return 1;
    }
    return 0;
}
