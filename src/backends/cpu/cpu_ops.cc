#include "backends/cpu/cpu_ops.h"

#include "ops/attention_range.h"
#include "ops/conv_geometry.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace parakeet::cpu {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
           const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    if (m == 0 || n == 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
                static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
}

void add_bias_rows(float* y, const float* bias, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
        float* yr = y + r * cols;
        for (int64_t c = 0; c < cols; ++c) yr[c] += bias[c];
    }
}

void layer_norm(const float* x, const float* gamma, const float* beta, float eps, int64_t rows, int64_t cols,
                float* y) {
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        double sum = 0.0;
        for (int64_t c = 0; c < cols; ++c) sum += xr[c];
        const float mean = static_cast<float>(sum / cols);
        double var = 0.0;
        for (int64_t c = 0; c < cols; ++c) {
            const double d = xr[c] - mean;
            var += d * d;
        }
        const float rstd = static_cast<float>(1.0 / std::sqrt(var / cols + eps));
        for (int64_t c = 0; c < cols; ++c) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    }
}

void silu(float* x, int64_t n) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.f + std::exp(-x[i]));
}

void relu(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f;
}

void add_scaled(float* y, const float* x, float alpha, int64_t n) {
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void glu(const float* x, int64_t rows, int64_t cols, float* y) {
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r) {
        const float* a = x + r * 2 * cols;
        const float* g = a + cols;
        float* yr = y + r * cols;
        for (int64_t c = 0; c < cols; ++c) yr[c] = a[c] * (1.f / (1.f + std::exp(-g[c])));
    }
}

void depthwise_conv1d(const float* x, const float* w, const float* bias, int64_t batch, int64_t t, int64_t c,
                      int64_t k, int64_t pad_left, float* y) {
    // w is [C, K]; transpose once to [K, C] so the inner loop runs over contiguous channels.
    std::vector<float> wt(static_cast<size_t>(k * c));
    for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t j = 0; j < k; ++j) wt[j * c + ch] = w[ch * k + j];
#pragma omp parallel for collapse(2) if (batch * t * c > 32768)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t ti = 0; ti < t; ++ti) {
            float* yr = y + (b * t + ti) * c;
            for (int64_t ch = 0; ch < c; ++ch) yr[ch] = bias ? bias[ch] : 0.f;
            for (int64_t j = 0; j < k; ++j) {
                const int64_t src = ti + j - pad_left;
                if (src < 0 || src >= t) continue;
                const float* xr = x + (b * t + src) * c;
                const float* wr = wt.data() + j * c;
                for (int64_t ch = 0; ch < c; ++ch) yr[ch] += wr[ch] * xr[ch];
            }
        }
    }
}

void rel_pos_attention(const AttentionArgs& a, const float* q, const float* k, const float* v, const float* p,
                       const float* pos_bias_u, const float* pos_bias_v, float* out) {
    const int64_t d_model = a.n_heads * a.d_head;
    const int64_t n_key = a.n_key;
    const float denom = std::sqrt(static_cast<float>(a.d_head));  // NeMo divides after the sum
    constexpr int64_t kBlock = 256;
    std::vector<float> qu(static_cast<size_t>(kBlock * a.d_head)), qv(qu.size());
    std::vector<int64_t> row_lo(kBlock), row_hi(kBlock);
    std::vector<float> ac, bd;
    for (int64_t b = 0; b < a.batch; ++b) {
        const int64_t nq_valid = a.q_valid ? a.q_valid[b] : a.n_query;
        const float* qb = q + b * a.n_query * d_model;
        const float* kb_ptr = k + b * n_key * d_model;
        const float* vb_ptr = v + b * n_key * d_model;
        float* ob = out + b * a.n_query * d_model;
        for (int64_t i0 = 0; i0 < a.n_query; i0 += kBlock) {
            const int64_t i1 = std::min(i0 + kBlock, a.n_query);
            const int64_t nb = i1 - i0;
            // Allowed keys per row ([lo, hi), absolute); the block spans their union, and the distances
            // (C+i) - j they reach select a contiguous range of positional rows.
            KeySpan span;
            const bool any = attention_block_span(
                a.n_cache + i0, nb, std::clamp<int64_t>(nq_valid - i0, 0, nb), a.key_begin ? a.key_begin[b] : 0,
                a.key_end ? a.key_end[b] : n_key, a.att_left, a.att_right, a.att_chunk, a.att_left_chunks,
                row_lo.data(), row_hi.data(), span);
            const int64_t j0 = span.j0, j1 = span.j1, d_max = span.d_max, d_min = span.d_min;
            for (int64_t h = 0; h < a.n_heads; ++h) {
                if (!any) {
                    for (int64_t i = 0; i < nb; ++i)
                        std::fill_n(ob + (i0 + i) * d_model + h * a.d_head, a.d_head, 0.f);
                    continue;
                }
                const float* u = pos_bias_u + h * a.d_head;
                const float* vv = pos_bias_v + h * a.d_head;
                for (int64_t i = 0; i < nb; ++i)
                    for (int64_t c = 0; c < a.d_head; ++c) {
                        const float x = qb[(i0 + i) * d_model + h * a.d_head + c];
                        qu[i * a.d_head + c] = x + u[c];
                        qv[i * a.d_head + c] = x + vv[c];
                    }
                const int64_t nk = j1 - j0;
                const int64_t r0 = a.pos_first - d_max;  // row of p holding distance d: pos_first - d
                const int64_t nr = d_max - d_min + 1;
                ac.resize(static_cast<size_t>(nb * nk));
                bd.resize(static_cast<size_t>(nb * nr));
                sgemm(false, true, nb, nk, a.d_head, 1.f, qu.data(), a.d_head, kb_ptr + j0 * d_model + h * a.d_head,
                      d_model, 0.f, ac.data(), nk);
                sgemm(false, true, nb, nr, a.d_head, 1.f, qv.data(), a.d_head, p + r0 * d_model + h * a.d_head,
                      d_model, 0.f, bd.data(), nr);
#pragma omp parallel for if (nb * nk > 16384)
                for (int64_t i = 0; i < nb; ++i) {
                    float* row = ac.data() + i * nk;
                    const float* bdr = bd.data() + i * nr;
                    const int64_t qpos = a.n_cache + i0 + i;
                    const int64_t lo = row_lo[i] - j0, hi = row_hi[i] - j0;
                    if (hi <= lo) {  // padded query or nothing allowed: NeMo zeroes the probabilities
                        std::fill_n(row, nk, 0.f);
                        continue;
                    }
                    float mx = -std::numeric_limits<float>::infinity();
                    for (int64_t j = lo; j < hi; ++j) {
                        const int64_t r = a.pos_first - (qpos - (j0 + j)) - r0;
                        row[j] = (row[j] + bdr[r]) / denom;
                        mx = std::max(mx, row[j]);
                    }
                    float sum = 0.f;
                    for (int64_t j = lo; j < hi; ++j) {
                        row[j] = std::exp(row[j] - mx);
                        sum += row[j];
                    }
                    const float inv = 1.f / sum;
                    for (int64_t j = 0; j < nk; ++j) row[j] = (j >= lo && j < hi) ? row[j] * inv : 0.f;
                }
                sgemm(false, false, nb, a.d_head, nk, 1.f, ac.data(), nk, vb_ptr + j0 * d_model + h * a.d_head,
                      d_model, 0.f, ob + i0 * d_model + h * a.d_head, d_model);
            }
        }
    }
}

}  // namespace parakeet::cpu

namespace parakeet::cpu {

void conv2d_3x3_s2(const float* x, int64_t c_in, int64_t t, int64_t f, const float* w, const float* bias,
                   int64_t c_out, bool depthwise, int64_t pad_lo, float* y) {
    const int64_t t2 = (t + pad_lo - 2) / 2 + 1, f2 = (f + pad_lo - 2) / 2 + 1;
#pragma omp parallel for if (c_out * t2 * f2 > 16384)
    for (int64_t co = 0; co < c_out; ++co) {
        const float* xin = x + (depthwise ? co : 0) * t * f;
        const float* wk = w + co * 9;
        float* yo = y + co * t2 * f2;
        for (int64_t ti = 0; ti < t2; ++ti) {
            for (int64_t fi = 0; fi < f2; ++fi) {
                float acc = 0.f;
                for (int64_t i = 0; i < 3; ++i) {
                    const int64_t ts = 2 * ti + i - pad_lo;
                    if (ts < 0 || ts >= t) continue;
                    for (int64_t j = 0; j < 3; ++j) {
                        const int64_t fs = 2 * fi + j - pad_lo;
                        if (fs < 0 || fs >= f) continue;
                        acc += wk[i * 3 + j] * xin[ts * f + fs];
                    }
                }
                yo[ti * f2 + fi] = acc + bias[co];
            }
        }
    }
    (void)c_in;
}

void subsample_front(const float* x, const int* lengths, int64_t batch, int64_t t_max, int64_t f, const float* w0,
                     const float* b0, const float* w1, const float* b1, int64_t c, int64_t pad_lo, int64_t t2_max,
                     int64_t f1, int64_t f2, float* y) {
#pragma omp parallel for collapse(2) if (batch * t2_max * f2 * c > 16384)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t t2 = 0; t2 < t2_max; ++t2) {
            const int64_t len = lengths[b], len1 = conv3x3_s2_size(len, pad_lo), len2 = conv3x3_s2_size(len1, pad_lo);
            const float* xb = x + b * t_max * f;
            float* out = y + (b * t2_max + t2) * f2 * c;
            for (int64_t j = 0; j < f2; ++j) {
                for (int64_t ch = 0; ch < c; ++ch) {
                    if (t2 >= len2) {
                        out[j * c + ch] = 0.f;
                        continue;
                    }
                    float acc1 = b1[ch];
                    for (int64_t a = 0; a < 3; ++a) {
                        const int64_t t1 = 2 * t2 + a - pad_lo;
                        if (t1 < 0 || t1 >= len1) continue;
                        for (int64_t bb = 0; bb < 3; ++bb) {
                            const int64_t c1 = 2 * j + bb - pad_lo;
                            if (c1 < 0 || c1 >= f1) continue;
                            float acc0 = 0.f;
                            for (int64_t a0 = 0; a0 < 3; ++a0) {
                                const int64_t ts = 2 * t1 + a0 - pad_lo;
                                if (ts < 0 || ts >= len) continue;
                                for (int64_t b0i = 0; b0i < 3; ++b0i) {
                                    const int64_t fs = 2 * c1 + b0i - pad_lo;
                                    if (fs < 0 || fs >= f) continue;
                                    acc0 += w0[ch * 9 + a0 * 3 + b0i] * xb[ts * f + fs];
                                }
                            }
                            acc1 += w1[ch * 9 + a * 3 + bb] * std::max(acc0 + b0[ch], 0.f);
                        }
                    }
                    out[j * c + ch] = acc1;
                }
            }
        }
    }
}

void relu_depthwise_conv2d_s2(const float* x, const float* in_bias, const int* lengths, int64_t batch,
                              int64_t t_in_max, int64_t f_in, int64_t c, const float* w, const float* bias,
                              int64_t pad_lo, int64_t t_out_max, int64_t f_out, float* y) {
#pragma omp parallel for collapse(2) if (batch * t_out_max * f_out * c > 16384)
    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t to = 0; to < t_out_max; ++to) {
            const int64_t len = lengths[b], len_out = conv3x3_s2_size(len, pad_lo);
            const float* xb = x + b * t_in_max * f_in * c;
            float* out = y + (b * t_out_max + to) * f_out * c;
            for (int64_t fo = 0; fo < f_out; ++fo) {
                for (int64_t ch = 0; ch < c; ++ch) {
                    float acc = 0.f;
                    if (to < len_out) {
                        acc = bias[ch];
                        for (int64_t a = 0; a < 3; ++a) {
                            const int64_t ts = 2 * to + a - pad_lo;
                            if (ts < 0 || ts >= len) continue;
                            for (int64_t bb = 0; bb < 3; ++bb) {
                                const int64_t fs = 2 * fo + bb - pad_lo;
                                if (fs < 0 || fs >= f_in) continue;
                                acc += w[ch * 9 + a * 3 + bb] *
                                       std::max(xb[(ts * f_in + fs) * c + ch] + (in_bias ? in_bias[ch] : 0.f), 0.f);
                            }
                        }
                    }
                    out[fo * c + ch] = acc;
                }
            }
        }
    }
}

}  // namespace parakeet::cpu

namespace parakeet::cpu {

void add_row_bias(float* y, const float* bias, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > 32768)
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < cols; ++i) y[r * cols + i] += bias[r];
}

void scale(float* x, float alpha, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] *= alpha;
}

void flatten_channels(const float* x, int64_t c, int64_t t, int64_t f, float* y) {
#pragma omp parallel for if (c * t * f > 32768)
    for (int64_t ti = 0; ti < t; ++ti)
        for (int64_t ci = 0; ci < c; ++ci)
            for (int64_t fi = 0; fi < f; ++fi) y[(ti * c + ci) * f + fi] = x[(ci * t + ti) * f + fi];
}

void zero_after_lengths(float* x, const int* lengths, int64_t batch, int64_t t, int64_t d) {
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t ti = std::max<int64_t>(lengths[b], 0); ti < t; ++ti) std::fill_n(x + (b * t + ti) * d, d, 0.f);
}

}  // namespace parakeet::cpu
