#include "decoding/greedy.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace parakeet {

void greedy_decode(const Predictor& predictor, const Joint& joint, const GreedyOptions& opt, const float* fproj,
                   int n_frames, DecoderState& st, std::vector<Token>& tokens, const DecodeTraceSink& trace) {
    const int jh = joint.hidden();
    const int n_out = joint.n_outputs();
    const int blank = opt.blank_id;
    const bool tdt = !opt.durations.empty();
    const int n_dur = static_cast<int>(opt.durations.size());
    PK_CHECK(n_out == blank + 1 + n_dur, kInternal, "joint has {} outputs, expected {}", n_out, blank + 1 + n_dur);
    std::vector<float> g(predictor.hidden()), scratch(jh), logits(n_out);
    if (!st.started) {
        // SOS: one LSTM step on the blank (zero) embedding from the zero state.
        st.lstm = predictor.initial_state();
        predictor.step(blank, st.lstm, g.data());
        st.pred_proj.assign(jh, 0.f);
        joint.project_prediction(g.data(), st.pred_proj.data());
        st.started = true;
        st.time_jump = 0;
    }
    const int T = n_frames;
    int t = st.time_jump;
    int last_ts = -1, run = 0;
    float confidence = 0.f;

    // Argmax over tokens + blank (ties: lowest index) and over the duration logits.
    auto step = [&](int frame, int& tok, int& dur) {
        joint.logits(fproj + static_cast<int64_t>(frame) * jh, st.pred_proj.data(), scratch.data(), logits.data());
        tok = 0;
        for (int i = 1; i <= blank; ++i)
            if (logits[i] > logits[tok]) tok = i;
        double sum = 0.0;
        for (int i = 0; i <= blank; ++i) sum += std::exp(static_cast<double>(logits[i] - logits[tok]));
        confidence = static_cast<float>(1.0 / sum);
        if (tdt) {
            int di = 0;
            for (int i = 1; i < n_dur; ++i)
                if (logits[blank + 1 + i] > logits[blank + 1 + di]) di = i;
            dur = opt.durations[di];
            if (tok == blank && dur == 0) dur = 1;
        } else {
            dur = tok == blank ? 1 : 0;
        }
        if (trace) trace({st.frames_decoded + frame, tok, dur, tok != blank});
    };

    while (t < T) {
        int tok, dur;
        step(t, tok, dur);
        int t_tok = t;
        t += dur;
        while (tok == blank && t < T) {  // find the next non-blank, jumping by each blank's duration
            t_tok = t;
            step(t, tok, dur);
            t += dur;
        }
        if (tok != blank) {  // emitted even if t has just moved past T
            tokens.push_back({tok, st.frames_decoded + t_tok, tdt ? dur : 0, confidence});
            run = (t_tok == last_ts) ? run + 1 : 1;
            last_ts = t_tok;
            predictor.step(tok, st.lstm, g.data());
            joint.project_prediction(g.data(), st.pred_proj.data());
            if (t < T && run >= opt.max_symbols && last_ts == t) t += 1;  // force a step
        }
    }
    st.time_jump = t - T;
    st.frames_decoded += T;
}

}  // namespace parakeet
