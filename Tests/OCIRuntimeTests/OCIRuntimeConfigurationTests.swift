import ContainerRuntime
import Foundation
@testable import OCIRuntime
import PlaneCore
import Testing

/// `[agent.oci]` of drone.toml, as the drone hands it to the runtime (a JSON object).
struct OCIRuntimeConfigurationTests {
    func configuration(_ json: String) throws(RuntimeError) -> OCIRuntimeConfiguration {
        let object = (try? JSONParser.parse(json))?.objectValue ?? JSONObject()
        return try OCIRuntimeConfiguration(json: object, droneStateDirectory: "/var/lib/plane")
    }

    func problem(_ json: String) -> String? {
        do {
            _ = try configuration(json)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func defaultsLiveInTheDronesStateDirectory() throws {
        let defaults = try configuration("{}")
        #expect(defaults.runtime == "auto" && defaults.stateDirectory == "/var/lib/plane/oci" && defaults.shimExecutable == nil)
        #expect(defaults.defaultRegistry == RegistryReference.dockerHub && defaults.insecureRegistries.isEmpty && defaults.seccompProfile == "default")
        #expect(defaults.defaultMemoryBytes == 4 << 30, "a backend without a limit of its own cannot take the whole host")
        #expect(defaults.defaultPidsLimit == 4096 && !defaults.readOnlyRoot && !defaults.allowMounts && defaults.useOverlay)
        #expect(defaults.imageRetention == .seconds(86_400) && defaults.garbageCollectionInterval == .seconds(3600) && defaults.standbyShim)
        #expect(defaults.network == .namespace && defaults.subnet.description == "10.213.0.0/16" && defaults.nameservers == nil)
        #expect(defaults.egress == .denyAll, "namespaces reach nothing beyond the drone's host by default")
    }

    @Test func everyKeyIsRead() throws {
        let all = try configuration("""
            {"runtime": "crun", "state_dir": "/srv/oci", "shim": "/usr/local/bin/plane", "default_registry": "registry.example:5000",
             "insecure_registries": ["127.0.0.1:5000", "build-cache:80"], "seccomp_profile": "/etc/plane/seccomp.json",
             "pids_limit": 256, "read_only_root": true, "allow_mounts": true, "overlay": false,
             "image_retention_secs": 0, "gc_interval_secs": 60, "standby_shim": false,
             "network": "namespace", "subnet": "192.168.240.0/20", "nameservers": ["192.0.2.53", "2001:db8::53"],
             "oom_score_adj": 900, "tmp_size_bytes": 1048576, "max_output_bytes": 1048576, "memory_limit_bytes": 67108864, "egress": ["10.20.0.0/16"], "writable_layer_bytes": 1073741824}
            """)
        #expect(all.runtime == "crun" && all.stateDirectory == "/srv/oci" && all.shimExecutable == "/usr/local/bin/plane")
        #expect(all.defaultRegistry == "registry.example:5000" && all.insecureRegistries == ["127.0.0.1:5000", "build-cache:80"])
        #expect(all.seccompProfile == "/etc/plane/seccomp.json" && all.defaultPidsLimit == 256)
        #expect(all.readOnlyRoot && all.allowMounts && !all.useOverlay)
        #expect(all.imageRetention == .zero && all.garbageCollectionInterval == .seconds(60) && !all.standbyShim)
        let subnet = try IPv4Subnet("192.168.240.0/20")
        #expect(all.network == .namespace && all.subnet == subnet && all.nameservers == ["192.0.2.53", "2001:db8::53"])
        #expect(all.oomScoreAdjust == 900 && all.tmpfsSizeBytes == 1 << 20 && all.maxOutputBytes == 1 << 20 && all.defaultMemoryBytes == 64 << 20)
        #expect(try configuration(#"{"memory_limit_bytes": 0}"#).defaultMemoryBytes == nil, "0: no limit")
        let listed = EgressPolicy.allowList([try IPv4Subnet("10.20.0.0/16")])
        #expect(all.egress == listed && all.writableLayerBytes == 1 << 30)
        #expect(try configuration(#"{"writable_layer_bytes": 0}"#).writableLayerBytes == nil && (try configuration("{}")).writableLayerBytes == nil)
        #expect(problem(#"{"writable_layer_bytes": 4096}"#) == "[agent.oci] writable_layer_bytes must be 0 (no limit) or an integer from 1048576 (1 MiB) to 1125899906842624.")
        #expect(try configuration(#"{"egress": "allow"}"#).egress == .allowAll)
        #expect(problem(#"{"egress": "open"}"#)?.hasPrefix("[agent.oci] egress 'open' is not a policy") == true)
        #expect(problem(#"{"oom_score_adj": 1001}"#)?.contains("oom_score_adj") == true)
        let pace = try configuration(#"{"pull_min_bytes_per_sec": 100000, "pull_slow_secs": 20}"#).imageLimits.pullPace
        #expect(pace == TransferPace(minimumBytesPerSecond: 100_000, window: .seconds(20)))
        #expect(try configuration("{}").imageLimits.pullPace == TransferPace(minimumBytesPerSecond: 4096, window: .seconds(60)))
        #expect(problem(#"{"pull_slow_secs": 0}"#)?.contains("pull_slow_secs") == true)
        #expect(problem(#"{"pull_min_bytes_per_sec": -1}"#)?.contains("pull_min_bytes_per_sec") == true)
    }

    @Test func badSettingsNameTheKeyAndWhatItTakes() {
        let unknown = problem(#"{"binary": "crun"}"#)
        #expect(unknown?.contains("[agent.oci] has no setting 'binary'") == true && unknown?.contains("runtime, seccomp_profile") == true, "\(unknown ?? "accepted")")
        #expect(problem(#"{"runtime": ""}"#) == "[agent.oci] runtime must be a non-empty string.")
        #expect(problem(#"{"runtime": 3}"#) == "[agent.oci] runtime must be a non-empty string.")
        #expect(problem(#"{"pids_limit": 0}"#) == "[agent.oci] pids_limit must be an integer from 1 to 4194304.")
        #expect(problem(#"{"pids_limit": 1.5}"#) == "[agent.oci] pids_limit must be an integer from 1 to 4194304.")
        let memoryRange = "[agent.oci] memory_limit_bytes must be 0 (no limit) or an integer from 6291456 (6 MiB) to 1125899906842624."
        #expect(problem(#"{"memory_limit_bytes": 4096}"#) == memoryRange, "below what a container starts with")
        #expect(problem(#"{"memory_limit_bytes": -1}"#) == memoryRange)
        #expect(problem(#"{"memory_limit_bytes": 9223372036854775807}"#) == memoryRange)
        #expect(problem(#"{"memory_limit_bytes": "4G"}"#) == memoryRange)
        #expect(problem(#"{"gc_interval_secs": 0}"#) == "[agent.oci] gc_interval_secs must be an integer from 1 to 31536000.")
        #expect(problem(#"{"image_retention_secs": -1}"#) == "[agent.oci] image_retention_secs must be an integer from 0 to 315360000.")
        // Settings far beyond sense are refused with their range, not carried into arithmetic
        // (an image retention of 2^63-1 s overflowed the garbage collector's cutoff).
        #expect(problem(#"{"image_retention_secs": 9223372036854775807}"#) == "[agent.oci] image_retention_secs must be an integer from 0 to 315360000.")
        #expect(problem(#"{"max_layers": 0}"#) == "[agent.oci] max_layers must be an integer from 1 to 1000.")
        #expect(problem(#"{"max_layer_bytes": 5}"#) == "[agent.oci] max_layer_bytes must be an integer from 1024 to 1125899906842624.")
        #expect(problem(#"{"overlay": "yes"}"#) == "[agent.oci] overlay must be true or false.")
        #expect(problem(#"{"insecure_registries": "127.0.0.1:5000"}"#) == "[agent.oci] insecure_registries must be a list of host[:port] strings.")
        #expect(problem(#"{"insecure_registries": [5000]}"#) == "[agent.oci] insecure_registries must be a list of host[:port] strings.")
        #expect(problem(#"{"state_dir": "relative/oci"}"#) == "[agent.oci] state_dir must be an absolute path.")
        #expect(problem(#"{"network": "bridge"}"#) == "[agent.oci] network must be \"host\" or \"namespace\".")
        #expect(problem(#"{"subnet": "10.213.0.0"}"#)?.hasPrefix("[agent.oci] subnet must be an IPv4 subnet like 10.213.0.0/16") == true)
        #expect(problem(#"{"subnet": "10.213.0.1/16"}"#)?.contains("has host bits set; the network is 10.213.0.0/16") == true)
        #expect(problem(#"{"subnet": "10.213.0.0/31"}"#) == "[agent.oci] subnet must be at least a /30 (each backend takes two addresses).")
        #expect(problem(#"{"nameservers": ["dns.example"]}"#) == "[agent.oci] nameservers must be a list of IPv4 or IPv6 addresses.")
        #expect(problem(#"{"nameservers": "192.0.2.53"}"#) == "[agent.oci] nameservers must be a list of IPv4 or IPv6 addresses.")
    }

    @Test func aMissingRuntimeBinaryOrShimStopsTheRuntimeWithWhatToDo() async throws {
        let state = FileManager.default.temporaryDirectory.appendingPathComponent("oci-config-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: state) }
        var missingBinary = OCIRuntimeConfiguration(stateDirectory: state)
        missingBinary.runtime = "no-such-oci-runtime"
        do {
            _ = try await OCIRuntime.make(configuration: missingBinary, droneID: .random(), logger: .init(label: "test"))
            Issue.record("a runtime without its runtime binary was made")
        } catch {
            #expect(error.code == .unavailable && error.message.hasPrefix("OCI runtime 'no-such-oci-runtime' is not installed: apt-get install -y runc"), "\(error)")
        }
        var missingShim = OCIRuntimeConfiguration(stateDirectory: state)
        missingShim.shimExecutable = "/nonexistent/plane"
        do {
            _ = try await OCIRuntime.make(configuration: missingShim, droneID: .random(), logger: .init(label: "test"))
            Issue.record("a runtime without its shim was made")
        } catch {
            #expect(error.message == "The OCI shim executable /nonexistent/plane does not exist; set [agent.oci] shim to the plane executable.")
        }
    }
}
