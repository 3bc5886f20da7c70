// The shipped deployment files: every manifest parses, the Deployment's
// settings agree with the config it mounts, the PrometheusRule matches the
// rules file, and the rendered tenant namespaces match `fairctl k8s render`.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "fairserve/config/config.h"
#include "fairserve/config/render.h"
#include "yaml-cpp/yaml.h"

namespace fairserve {
namespace {

namespace fs = std::filesystem;
const fs::path kDeploy = fs::path(SOURCE_DIR) / "deploy";

std::string Slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Structural equality (flow vs block style and quoting do not matter).
bool SameYaml(const YAML::Node& a, const YAML::Node& b) {
  if (a.Type() != b.Type()) return false;
  if (a.IsScalar()) return a.Scalar() == b.Scalar();
  if (a.size() != b.size()) return false;
  if (a.IsSequence()) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!SameYaml(a[i], b[i])) return false;
    }
    return true;
  }
  for (const auto& kv : a) {
    YAML::Node other = b[kv.first.Scalar()];
    if (!other.IsDefined() || !SameYaml(kv.second, other)) return false;
  }
  return true;
}

YAML::Node FindKind(const std::string& file, const std::string& kind) {
  for (const YAML::Node& doc : YAML::LoadAllFromFile((kDeploy / "k8s" / file).string())) {
    if (doc["kind"].as<std::string>() == kind) return doc;
  }
  ADD_FAILURE() << "no " << kind << " in " << file;
  return YAML::Node();
}

// The environment variable `name` as the StatefulSet's fairserve container
// sets it: its secretKeyRef, looked up in the Secret of postgres.yaml.
std::string PodEnvFromSecret(const std::string& name) {
  YAML::Node sts = FindKind("deployment.yaml", "StatefulSet");
  for (const YAML::Node& e : sts["spec"]["template"]["spec"]["containers"][0]["env"]) {
    if (e["name"].as<std::string>() != name) continue;
    YAML::Node ref = e["valueFrom"]["secretKeyRef"];
    YAML::Node secret = FindKind("postgres.yaml", "Secret");
    EXPECT_EQ(ref["name"].as<std::string>(), secret["metadata"]["name"].as<std::string>());
    return secret["stringData"][ref["key"].as<std::string>()].as<std::string>();
  }
  ADD_FAILURE() << "the fairserve container does not set " << name;
  return "";
}

// The ConfigMap's config, parsed in the environment the pod gives it.
absl::StatusOr<std::shared_ptr<const Config>> ConfigMapConfig() {
  YAML::Node cm = FindKind("configmap.yaml", "ConfigMap");
  setenv("FAIRSERVE_USAGE_DSN", PodEnvFromSecret("FAIRSERVE_USAGE_DSN").c_str(), 1);
  auto config = ParseConfig(cm["data"]["config.yaml"].as<std::string>(), "configmap.yaml", "/");
  unsetenv("FAIRSERVE_USAGE_DSN");
  return config;
}

TEST(DeployTest, EveryKubernetesManifestParses) {
  int docs = 0;
  for (const auto& entry : fs::recursive_directory_iterator(kDeploy / "k8s")) {
    if (entry.path().extension() != ".yaml") continue;
    std::vector<YAML::Node> nodes;
    ASSERT_NO_THROW(nodes = YAML::LoadAllFromFile(entry.path().string())) << entry.path();
    for (const YAML::Node& doc : nodes) {
      EXPECT_TRUE(doc["apiVersion"].IsScalar()) << entry.path();
      EXPECT_TRUE(doc["kind"].IsScalar()) << entry.path();
      EXPECT_TRUE(doc["metadata"]["name"].IsScalar()) << entry.path();
      ++docs;
    }
  }
  EXPECT_GE(docs, 12);
  ASSERT_NO_THROW(YAML::LoadFile((kDeploy / "prometheus" / "prometheus.yml").string()));
}

TEST(DeployTest, DeploymentAgreesWithItsConfig) {
  auto config = ConfigMapConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  YAML::Node dep = FindKind("deployment.yaml", "StatefulSet");
  YAML::Node pod = dep["spec"]["template"]["spec"];
  double drain = (*config)->server.drain_timeout_s + (*config)->server.shutdown_grace_s;
  EXPECT_GE(pod["terminationGracePeriodSeconds"].as<double>(), drain);
  YAML::Node c = pod["containers"][0];
  EXPECT_EQ(c["readinessProbe"]["grpc"]["port"].as<int>(), (*config)->server.grpc_port);
  EXPECT_EQ(c["resources"]["limits"]["nvidia.com/gpu"].as<int>(), 1);
  EXPECT_EQ(c["livenessProbe"]["httpGet"]["path"].as<std::string>(), "/healthz");
  bool data_mounted = false;
  for (const YAML::Node& m : c["volumeMounts"]) {
    data_mounted |= m["mountPath"].as<std::string>() == (*config)->server.data_dir;
  }
  EXPECT_TRUE(data_mounted) << "the ledger directory must be on the persistent volume";
  // One ledger volume per replica, kept when the fleet scales down.
  EXPECT_EQ(dep["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as<std::string>(),
            "ledger");
  EXPECT_EQ(dep["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"].as<std::string>(),
            "Retain");
  EXPECT_TRUE((*config)->server.replica_id.empty()) << "replicas take their pod name";
}

TEST(DeployTest, FleetPiecesAgree) {
  auto config = ConfigMapConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  const RateLimitBackendConfig& backend = (*config)->rate_limit_backend;
  EXPECT_EQ(backend.type, RateLimitBackendType::kRedis);
  // The configured address is the Redis Service's DNS name and port.
  YAML::Node redis = FindKind("redis.yaml", "Service");
  std::string dns = redis["metadata"]["name"].as<std::string>() + "." +
                    redis["metadata"]["namespace"].as<std::string>() + ".svc:" +
                    redis["spec"]["ports"][0]["port"].as<std::string>();
  EXPECT_EQ(backend.address, dns);
  YAML::Node redis_dep = FindKind("redis.yaml", "Deployment");
  EXPECT_TRUE(SameYaml(redis["spec"]["selector"],
                       redis_dep["spec"]["template"]["metadata"]["labels"]));
  // The autoscaler scales the StatefulSet, and the fallback share assumes
  // the largest fleet it may make.
  YAML::Node hpa = FindKind("autoscaling.yaml", "HorizontalPodAutoscaler");
  YAML::Node sts = FindKind("deployment.yaml", "StatefulSet");
  EXPECT_EQ(hpa["spec"]["scaleTargetRef"]["kind"].as<std::string>(), "StatefulSet");
  EXPECT_EQ(hpa["spec"]["scaleTargetRef"]["name"].as<std::string>(),
            sts["metadata"]["name"].as<std::string>());
  EXPECT_EQ(hpa["spec"]["maxReplicas"].as<int64_t>(), backend.replicas);
  EXPECT_LE(hpa["spec"]["minReplicas"].as<int64_t>(), sts["spec"]["replicas"].as<int64_t>());
  YAML::Node pdb = FindKind("autoscaling.yaml", "PodDisruptionBudget");
  EXPECT_TRUE(SameYaml(pdb["spec"]["selector"]["matchLabels"],
                       sts["spec"]["template"]["metadata"]["labels"]));
}

TEST(DeployTest, UsageDatabaseComesFromASecret) {
  auto config = ConfigMapConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  const UsageSinkConfig& sink = (*config)->ledger.sink;
  EXPECT_EQ(sink.type, UsageSinkType::kPostgres);
  // The ConfigMap names the variable; the DSN itself is only in the Secret.
  EXPECT_EQ(sink.dsn_env, "FAIRSERVE_USAGE_DSN");
  std::string cm = Slurp(kDeploy / "k8s" / "configmap.yaml");
  EXPECT_EQ(cm.find("password"), std::string::npos);
  // The DSN points at the trial database's Service, with its user and
  // database, and the password the database is started with.
  YAML::Node svc = FindKind("postgres.yaml", "Service");
  std::string host = svc["metadata"]["name"].as<std::string>() + "." +
                     svc["metadata"]["namespace"].as<std::string>() + ".svc";
  EXPECT_NE(sink.dsn.find("host=" + host + " port=" +
                          svc["spec"]["ports"][0]["port"].as<std::string>()),
            std::string::npos)
      << sink.dsn;
  YAML::Node db = FindKind("postgres.yaml", "StatefulSet");
  std::map<std::string, YAML::Node> env;
  for (const YAML::Node& e : db["spec"]["template"]["spec"]["containers"][0]["env"]) {
    env[e["name"].as<std::string>()] = e;
  }
  EXPECT_NE(sink.dsn.find("user=" + env["POSTGRES_USER"]["value"].as<std::string>()),
            std::string::npos);
  EXPECT_NE(sink.dsn.find("dbname=" + env["POSTGRES_DB"]["value"].as<std::string>()),
            std::string::npos);
  YAML::Node secret = FindKind("postgres.yaml", "Secret");
  EXPECT_EQ(env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"].as<std::string>(),
            "password");
  EXPECT_NE(sink.dsn.find("password=" + secret["stringData"]["password"].as<std::string>()),
            std::string::npos);
  // The init container migrates the schema with the same DSN.
  YAML::Node init =
      FindKind("deployment.yaml", "StatefulSet")["spec"]["template"]["spec"]["initContainers"][0];
  EXPECT_EQ(init["command"][1].as<std::string>(), "db");
  EXPECT_EQ(init["command"][2].as<std::string>(), "migrate");
  EXPECT_EQ(init["env"][0]["valueFrom"]["secretKeyRef"]["name"].as<std::string>(),
            secret["metadata"]["name"].as<std::string>());
  EXPECT_TRUE(SameYaml(svc["spec"]["selector"], db["spec"]["template"]["metadata"]["labels"]));
}

TEST(DeployTest, PrometheusRuleHoldsTheRulesFile) {
  YAML::Node rule = FindKind("prometheusrule.yaml", "PrometheusRule");
  YAML::Node file = YAML::LoadFile((kDeploy / "prometheus" / "fairserve-rules.yml").string());
  EXPECT_TRUE(SameYaml(rule["spec"]["groups"], file["groups"]))
      << "deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/fairserve-rules.yml";
}

TEST(DeployTest, RenderedTenantNamespacesAreCurrent) {
  auto config = ConfigMapConfig();
  ASSERT_TRUE(config.ok()) << config.status();
  for (const TenantConfig& t : (*config)->tenants) {
    fs::path file = kDeploy / "k8s" / "tenants" / (TenantNamespace(t.id) + ".yaml");
    EXPECT_EQ(Slurp(file), RenderTenantManifests(t))
        << file << " is stale: re-run fairctl k8s render on the ConfigMap's config";
  }
}

TEST(DeployTest, SystemdUnitReloadsWithSighupAndDrains) {
  std::string unit = Slurp(kDeploy / "systemd" / "fairserve.service");
  EXPECT_THAT(unit, ::testing::HasSubstr("ExecReload=/bin/kill -HUP $MAINPID"));
  EXPECT_THAT(unit, ::testing::HasSubstr("KillSignal=SIGTERM"));
  EXPECT_THAT(Slurp(kDeploy / "docker" / "Dockerfile"), ::testing::HasSubstr("FROM debian:12"));
}

}  // namespace
}  // namespace fairserve
