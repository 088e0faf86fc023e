// parakeet parity: replays a per-chunk NeMo reference (JSONL) through the cache-aware encoder.
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "commands.h"
#include "runtime/parity.h"

namespace parakeet::cli {

namespace {

struct ParityArgs {
    std::string model, ref, mode = "functional", summary_json, plot;
    int chunk_size = -1, shift_size = -1, left_chunks = -1;
    double atol = 1e-4;
    std::vector<std::string> tensor_atol;  // name=value
};

void run_parity(const ParityArgs& a) {
    PK_CHECK(a.mode == "functional" || a.mode == "closed_loop", kInvalidArgument,
             "bad --mode '{}' (expected functional or closed_loop)", a.mode);
    ParityOptions opt;
    opt.mode = a.mode == "functional" ? ParityMode::kFunctional : ParityMode::kClosedLoop;
    opt.chunk_size = a.chunk_size;
    opt.shift_size = a.shift_size;
    opt.left_chunks = a.left_chunks;
    opt.default_atol = a.atol;
    for (const std::string& kv : a.tensor_atol) {
        const size_t eq = kv.find('=');
        PK_CHECK(eq != std::string::npos, kInvalidArgument, "bad --tensor-atol '{}' (expected NAME=VALUE)", kv);
        try {
            opt.atol[kv.substr(0, eq)] = std::stod(kv.substr(eq + 1));
        } catch (const std::logic_error&) {
            PK_THROW(kInvalidArgument, "bad --tensor-atol '{}' (expected NAME=VALUE)", kv);
        }
    }
    auto model = Model::load(a.model);
    auto ref = read_reference_jsonl(a.ref);
    ExecContext ctx;
    ParityReport r = run_stream_parity(*model, ctx, ref, opt);
    std::cout << fmt::format("{:>5} {:>24} {:>10} {:>10} {:>10} {:>10}  {}\n", "chunk", "tensor", "max_abs", "mean_abs",
                             "p95", "p99", "pass");
    for (const ChunkParity& c : r.chunks)
        for (const auto& [name, e] : c.tensors)
            std::cout << fmt::format("{:>5} {:>24} {:>10.3e} {:>10.3e} {:>10.3e} {:>10.3e}  {}\n", c.chunk, name,
                                     e.max_abs, e.mean_abs, e.p95, e.p99, e.pass && c.lengths_ok ? "ok" : "FAIL");
    for (const auto& [name, slope] : r.drift_slope)
        std::cout << fmt::format("drift {:>24}: {:+.3e} per chunk\n", name, slope);
    std::cout << fmt::format("first failing chunk: {}\ntokens match reference: {}\nresult: {}\n",
                             r.first_failing_chunk, r.ref_tokens.empty() ? "n/a" : (r.tokens == r.ref_tokens ? "yes" : "no"),
                             r.pass ? "PASS" : "FAIL");
    if (!a.summary_json.empty() || !a.plot.empty()) {
        const std::string path = a.summary_json.empty() ? a.plot + ".json" : a.summary_json;
        std::ofstream(path) << r.to_json().dump(1) << "\n";
        if (!a.plot.empty()) {
            const std::string cmd = fmt::format("/usr/bin/python3 '{}/plot_parity.py' '{}' '{}'", PARAKEET_TOOLS_DIR,
                                                path, a.plot);
            PK_CHECK(std::system(cmd.c_str()) == 0, kIo, "plotting failed: {}", cmd);
        }
    }
    if (!r.pass) throw Error(ErrorCode::kFormat, fmt::format("parity FAILED (first failing chunk {})", r.first_failing_chunk));
}

}  // namespace

void add_parity(CLI::App& app) {
    auto a = std::make_shared<ParityArgs>();
    CLI::App* sub = app.add_subcommand("parity", "Per-chunk parity of cache-aware streaming against a NeMo reference");
    sub->add_option("-m,--model", a->model, "NeMo checkpoint (.nemo)")->required();
    sub->add_option("--ref", a->ref, "Reference JSONL (one chunk per line: inputs, outputs, metadata)")->required();
    sub->add_option("--mode", a->mode, "functional (reference inputs each chunk) or closed_loop (own caches)");
    sub->add_option("--chunk-size", a->chunk_size, "setup_streaming_params chunk_size (encoder frames)");
    sub->add_option("--shift-size", a->shift_size, "setup_streaming_params shift_size (encoder frames)");
    sub->add_option("--left-chunks", a->left_chunks, "setup_streaming_params left_chunks");
    sub->add_option("--atol", a->atol, "Default absolute tolerance");
    sub->add_option("--tensor-atol", a->tensor_atol, "Per-tensor tolerance NAME=VALUE (repeatable)");
    sub->add_option("--summary-json", a->summary_json, "Write the per-chunk report as JSON");
    sub->add_option("--plot", a->plot, "Write a PNG of error over chunks (matplotlib)");
    sub->callback([a] { run_parity(*a); });
}

}  // namespace parakeet::cli
