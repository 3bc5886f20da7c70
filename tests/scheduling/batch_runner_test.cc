#include "fairserve/scheduling/batch_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "scheduling/test_util.h"

namespace fairserve {
namespace {

using namespace testing_util;
using ::testing::ElementsAre;

class RecordingObserver : public BatchObserver {
 public:
  void OnBatch(const BatchRecord& r) override { records.push_back(r); }
  std::vector<BatchRecord> records;
};

class BatchRunnerTest : public ::testing::Test {
 protected:
  FakeClock clock_;
  std::shared_ptr<DoublingExecutor> exec_ =
      std::make_shared<DoublingExecutor>(&clock_, std::chrono::milliseconds(10));
  std::shared_ptr<const Servable> servable_ = MakeServable(exec_);
  RecordingObserver observer_;
  BatchRunner runner_{clock_, {&observer_}};
};

TEST_F(BatchRunnerTest, SplitsOutputsAndCostBySamples) {
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, a));
  batch.push_back(MakeRequest(servable_, "globex", 3, 5.0f, b));
  BatchRecord record = runner_.Run(std::move(batch));

  EXPECT_THAT(exec_->batches(), ElementsAre(4));
  ASSERT_TRUE(a->result->ok());
  ASSERT_TRUE(b->result->ok());
  EXPECT_THAT(OutputFloats(**a->result), ElementsAre(2, 2));
  EXPECT_THAT(OutputFloats(**b->result), ElementsAre(10, 10, 10, 10, 10, 10));
  EXPECT_EQ((*b->result)->outputs[0].shape, (std::vector<int64_t>{3, 2}));
  // 4 samples x 10 ms = 40 ms, split 1:3.
  EXPECT_DOUBLE_EQ((*a->result)->compute_seconds, 0.010);
  EXPECT_DOUBLE_EQ((*b->result)->compute_seconds, 0.030);
  EXPECT_DOUBLE_EQ(record.compute_seconds, 0.040);
  ASSERT_EQ(observer_.records.size(), 1u);
  double sum = 0;
  for (const BatchItem& item : observer_.records[0].items) sum += item.compute_seconds;
  EXPECT_EQ(sum, record.compute_seconds);  // exactly, not approximately
}

// An executor whose device keeps its own clock (as CUDA events do): it
// reports 3 ms per sample while the host clock says 10.
// What is billed is the device's own timing of the batch when it has one,
// split by samples exactly as host time is.
TEST_F(BatchRunnerTest, BillsTheDevicesOwnTimingWhenItHasOne) {
  // 10 ms a sample of host time, 3 ms of it on the device.
  auto exec = std::make_shared<DoublingExecutor>(&clock_, std::chrono::milliseconds(10), 0.003);
  auto servable = MakeServable(exec);
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable, "acme", 1, 1.0f, a));
  batch.push_back(MakeRequest(servable, "globex", 3, 5.0f, b));
  BatchRecord record = runner_.Run(std::move(batch));
  ASSERT_TRUE(a->result->ok());
  EXPECT_DOUBLE_EQ(record.compute_seconds, 0.012);
  EXPECT_DOUBLE_EQ(record.device_seconds, 0.012);
  EXPECT_DOUBLE_EQ((*a->result)->compute_seconds, 0.003);
  EXPECT_DOUBLE_EQ((*b->result)->compute_seconds, 0.009);
}

// The scheduler's settle step (slot freed, tenant charged) comes after the
// observers have the record and before any client has its answer.
TEST_F(BatchRunnerTest, SettleRunsAfterTheObserversAndBeforeAnyAnswer) {
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, a));
  batch.push_back(MakeRequest(servable_, "globex", 3, 5.0f, b));
  int settled = 0;
  runner_.Run(std::move(batch), [&](const BatchRecord& record) {
    ++settled;
    EXPECT_EQ(observer_.records.size(), 1u);
    EXPECT_EQ(record.samples, 4);
    EXPECT_FALSE(a->done());
    EXPECT_FALSE(b->done());
  });
  EXPECT_EQ(settled, 1);
  EXPECT_TRUE(a->done() && b->done());
}

// A gate that holds the answers until the test lets them go.
class HeldGate : public ReplyGate {
 public:
  void AfterRecorded(std::function<void()> send) override { held.push_back(std::move(send)); }
  std::vector<std::function<void()>> held;
};

// The in-flight slots are not the runner's: each call keeps its own until
// its on_done runs (InferCallTest.AGateKeepsTheSlotUntilTheAnswerLeaves).
TEST_F(BatchRunnerTest, AGateHoldsAnswersUntilItLetsThemGo) {
  HeldGate gate;
  BatchRunner runner(clock_, {&observer_}, &gate);
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, a));
  batch.push_back(MakeRequest(servable_, "globex", 3, 5.0f, b));
  runner.Run(std::move(batch));
  // The observers have the record; the answers wait.
  ASSERT_EQ(observer_.records.size(), 1u);
  ASSERT_EQ(gate.held.size(), 1u);
  EXPECT_FALSE(a->result.has_value());
  EXPECT_FALSE(b->result.has_value());
  gate.held[0]();
  ASSERT_TRUE(a->result.has_value() && a->result->ok());
  ASSERT_TRUE(b->result.has_value() && b->result->ok());
}

TEST_F(BatchRunnerTest, FailingBatchIsRetriedSoOnlyTheFaultyRequestFails) {
  auto good1 = std::make_shared<Outcome>(), bad = std::make_shared<Outcome>(),
       good2 = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, good1));
  batch.push_back(MakeRequest(servable_, "mallory", 1, DoublingExecutor::kPoison, bad));
  batch.push_back(MakeRequest(servable_, "globex", 2, 3.0f, good2));
  BatchRecord record = runner_.Run(std::move(batch));

  EXPECT_THAT(exec_->batches(), ElementsAre(4, 1, 1, 2));
  EXPECT_TRUE(good1->result->ok());
  EXPECT_TRUE(good2->result->ok());
  EXPECT_EQ(bad->result->status().code(), absl::StatusCode::kInvalidArgument);
  // The shared failed run is not billed; each retry is billed to its own request.
  EXPECT_DOUBLE_EQ(record.compute_seconds, 0.040);
  // But it used the device: the fair-share clock sees both runs (40 + 40 ms).
  EXPECT_DOUBLE_EQ(record.device_seconds, 0.080);
  ASSERT_EQ(record.items.size(), 3u);
}

// An answer the transport could not send is an error before metering, and
// its share of the batch is not billed.
TEST_F(BatchRunnerTest, ResponseOverTheMessageLimitFailsUnbilled) {
  auto small = std::make_shared<Outcome>(), big = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, small));
  batch.push_back(MakeRequest(servable_, "globex", 3, 5.0f, big));
  // 1 sample: 8 bytes + 1 KiB allowance; 3 samples: 24 bytes + 1 KiB.
  for (auto& r : batch) r->max_response_bytes = 1024 + 16;
  BatchRecord record = runner_.Run(std::move(batch));
  ASSERT_TRUE(small->result->ok());
  EXPECT_EQ(big->result->status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(big->result->status().message()),
              ::testing::HasSubstr("over the server's message limit of 1040"));
  ASSERT_EQ(record.items.size(), 2u);
  EXPECT_EQ(record.items[1].code, absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(record.items[1].compute_seconds, 0);
  EXPECT_DOUBLE_EQ(record.compute_seconds, 0.010);  // only acme's share is billed
  EXPECT_DOUBLE_EQ(record.device_seconds, 0.040);
}

TEST_F(BatchRunnerTest, ExpiredAndCancelledRequestsDoNotRun) {
  auto late = std::make_shared<Outcome>(), gone = std::make_shared<Outcome>(),
       fine = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, late));
  batch.back()->deadline = clock_.Now() - std::chrono::milliseconds(1);
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, gone));
  batch.back()->cancelled = std::make_shared<std::atomic<bool>>(true);
  batch.push_back(MakeRequest(servable_, "acme", 1, 1.0f, fine));
  runner_.Run(std::move(batch));
  EXPECT_EQ(late->result->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(gone->result->status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(fine->result->ok());
  EXPECT_THAT(exec_->batches(), ElementsAre(1));
}

TEST_F(BatchRunnerTest, WrongOutputShapeIsInternal) {
  auto s = std::make_shared<Servable>(*servable_);
  s->config.outputs[0].shape = {-1, 3};
  auto r = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(s, "acme", 1, 1.0f, r));
  runner_.Run(std::move(batch));
  EXPECT_EQ(r->result->status().code(), absl::StatusCode::kInternal);
}

// An executor that ignores part_rows and answers every batch whole: a
// shared batch's output cannot be handed out, so the batch is refused
// (INTERNAL) and each request retried alone, where whole is right.
class UnsplitExecutor : public DoublingExecutor {
 public:
  using DoublingExecutor::DoublingExecutor;
  absl::StatusOr<std::vector<SplitOutput>> RunSplit(const std::vector<BatchInput>& inputs,
                                                    const std::vector<int64_t>&,
                                                    RunTiming* timing) override {
    return DoublingExecutor::RunSplit(inputs, {}, timing);
  }
};

TEST_F(BatchRunnerTest, OutputNotSplitIntoItsRequestsIsRetriedRequestByRequest) {
  auto exec = std::make_shared<UnsplitExecutor>(&clock_, std::chrono::milliseconds(10));
  auto s = MakeServable(exec);
  auto a = std::make_shared<Outcome>(), b = std::make_shared<Outcome>();
  std::vector<std::unique_ptr<InferenceRequest>> batch;
  batch.push_back(MakeRequest(s, "acme", 1, 1.0f, a));
  batch.push_back(MakeRequest(s, "acme", 2, 3.0f, b));
  runner_.Run(std::move(batch));
  EXPECT_THAT(exec->batches(), ElementsAre(3, 1, 2));
  ASSERT_TRUE(a->result->ok()) << a->result->status();
  ASSERT_TRUE(b->result->ok()) << b->result->status();
  EXPECT_THAT(OutputFloats(**a->result), ElementsAre(2, 2));
  EXPECT_THAT(OutputFloats(**b->result), ElementsAre(6, 6, 6, 6));
}

TEST(BatchableTest, NeedsSameModelAndNonBatchDims) {
  auto exec = std::make_shared<DoublingExecutor>(nullptr, Clock::Duration(0));
  auto s1 = MakeServable(exec), s2 = MakeServable(exec);
  auto o = std::make_shared<Outcome>();
  auto a = MakeRequest(s1, "a", 1, 1, o), b = MakeRequest(s1, "b", 4, 1, o),
       c = MakeRequest(s2, "a", 1, 1, o);
  EXPECT_TRUE(a->BatchableWith(*b));
  EXPECT_FALSE(a->BatchableWith(*c));
  b->inputs[0].shape = {4, 3};
  EXPECT_FALSE(a->BatchableWith(*b));
}

}  // namespace
}  // namespace fairserve
