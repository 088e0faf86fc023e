// Typed NeMo config: unsupported models are refused with a message naming the field and the value.
#include <gtest/gtest.h>

#include <fstream>

#include "io/nemo_archive.h"
#include "models/config.h"

namespace parakeet {
namespace {

std::string tiny_a_config() {
    static const std::string yaml =
        open_nemo(std::string(PARAKEET_TEST_DATA_DIR) + "/tiny-a/model/tiny-a.nemo").config_yaml;
    return yaml;
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return at == std::string::npos ? s : s.replace(at, from.size(), to);
}

std::string refusal(const std::string& yaml) {
    try {
        ModelConfig::parse(yaml).validate();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(Config, TinyAParsesWithEveryField) {
    ModelConfig c = ModelConfig::parse(tiny_a_config());
    EXPECT_NO_THROW(c.validate());
    EXPECT_EQ(c.preprocessor.features, 80);
    EXPECT_EQ(c.preprocessor.win_length(), 400);
    EXPECT_EQ(c.preprocessor.hop_length(), 160);
    EXPECT_EQ(c.encoder.n_layers, 2);
    EXPECT_EQ(c.encoder.d_model, 64);
    EXPECT_EQ(c.encoder.conv_context_size[0], 4);
    EXPECT_EQ(c.encoder.conv_context_size[1], 4);
    EXPECT_EQ(c.encoder.att_context_size.at(0)[0], -1);
    EXPECT_FALSE(c.encoder.use_bias);
    EXPECT_EQ(c.decoder.vocab_size, 128);
    EXPECT_EQ(c.decoder.pred_hidden, 48);
    EXPECT_EQ(c.joint.num_extra_outputs, 5);
    EXPECT_TRUE(c.is_tdt());
    EXPECT_EQ(c.decoding.durations, (std::vector<int>{0, 1, 2, 3, 4}));
    EXPECT_EQ(c.decoding.max_symbols, 10);
    EXPECT_EQ(c.blank_id(), 128);
}

TEST(Config, UnsupportedModelsNameTheFieldAndValue) {
    const std::string y = tiny_a_config();
    const std::pair<std::string, std::string> cases[][1] = {
        {{"subsampling: dw_striding", "subsampling: vggnet"}},
        {{"self_attention_model: rel_pos", "self_attention_model: abs_pos"}},
        {{"normalize: per_feature", "normalize: all_features"}},
        {{"nemo.collections.asr.modules.RNNTDecoder", "nemo.collections.asr.modules.TransformerDecoder"}},
        {{"nemo.collections.asr.modules.ConformerEncoder", "nemo.collections.asr.modules.WhisperEncoder"}},
        {{"conv_norm_type: batch_norm", "conv_norm_type: layer_norm"}},
        {{"model_type: tdt", "model_type: multiblank"}},
    };
    const char* expect[] = {"encoder.subsampling 'vggnet'",   "encoder.self_attention_model 'abs_pos'",
                            "preprocessor.normalize 'all_features'", "decoder._target_",
                            "encoder._target_",                "encoder.conv_norm_type 'layer_norm'",
                            "decoding.model_type 'multiblank'"};
    for (size_t i = 0; i < std::size(cases); ++i) {
        const std::string msg = refusal(replaced(y, cases[i][0].first, cases[i][0].second));
        EXPECT_NE(msg.find(expect[i]), std::string::npos) << "got: " << msg;
    }
    // A CTC-only model has no transducer decoder section.
    const size_t dec = y.find("\ndecoder:"), joint = y.find("\njoint:");
    ASSERT_NE(dec, std::string::npos);
    const std::string ctc = y.substr(0, dec) + y.substr(joint);
    EXPECT_NE(refusal(ctc).find("CTC-only"), std::string::npos) << refusal(ctc);
    EXPECT_NE(refusal("not: [valid").find("not valid YAML"), std::string::npos);
}

}  // namespace
}  // namespace parakeet
