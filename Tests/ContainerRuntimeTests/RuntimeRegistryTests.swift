import Logging
import PlaneCore
import Testing
@testable import ContainerRuntime

/// A runtime that only describes itself; enough to test the registry and shared checks.
struct DescribedOnlyRuntime: ContainerRuntime {
    let descriptor: RuntimeDescriptor

    init(name: String, modes: Set<NetworkModeKind> = [.host], mounts: Bool = false, options: Bool = false) {
        descriptor = RuntimeDescriptor(name: name, version: "1", capabilities: RuntimeCapabilities(
            networkModes: modes, mounts: mounts, stats: false, outOfMemoryEvents: false,
            optionsSchema: options ? .object(JSONObject([("type", .string("object"))])) : nil))
    }

    func validate(_ spec: BackendSpec) throws(RuntimeError) { try validateCommon(spec) }
    func prepare(_ spec: BackendSpec) async throws(RuntimeError) { throw RuntimeError(.unsupported, "no") }
    func start(_ spec: BackendSpec) async throws(RuntimeError) -> RuntimeHandle { throw RuntimeError(.unsupported, "no") }
    func status(of backend: BackendID) async throws(RuntimeError) -> RuntimeStatus { .unknown }
    func stop(_ backend: BackendID, grace: Duration) async throws(RuntimeError) {}
    func remove(_ backend: BackendID) async throws(RuntimeError) {}
    func events() -> AsyncStream<RuntimeEvent> { AsyncStream { $0.finish() } }
    func logs(of backend: BackendID, follow: Bool) -> AsyncThrowingStream<LogLine, any Error> { AsyncThrowingStream { $0.finish() } }
    func stats(of backend: BackendID) async throws(RuntimeError) -> ResourceSample { throw RuntimeError(.unsupported, "no") }
    func list() async throws(RuntimeError) -> [RuntimeHandle] { [] }
}

struct RuntimeRegistryTests {
    let context = RuntimeContext(droneID: "drone-1", stateDirectory: "/tmp/x", logger: Logger(label: "test"))

    @Test func registersAndMakesByName() async throws {
        var registry = RuntimeRegistry()
        try registry.register("docker") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "docker") }
        try registry.register("oci") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "oci") }
        #expect(registry.names == ["docker", "oci"])
        let runtime = try await registry.makeRuntime(named: "oci", context: context)
        #expect(runtime.descriptor.name == "oci")
    }

    @Test func duplicateNamesFail() throws {
        var registry = RuntimeRegistry()
        try registry.register("docker") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "docker") }
        let error = try #require(throws: RuntimeError.self) {
            try registry.register("docker") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "docker") }
        }
        #expect(error.code == .alreadyExists)
        #expect(throws: RuntimeError.self) { try registry.register("bad name") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "x") } }
    }

    @Test func unknownNameListsTheKnownOnes() async throws {
        var registry = RuntimeRegistry()
        try registry.register("docker") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "docker") }
        try registry.register("oci") { _ throws(RuntimeError) in DescribedOnlyRuntime(name: "oci") }
        do {
            _ = try await registry.makeRuntime(named: "gvisor", context: context)
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("'gvisor'") && error.message.contains("'docker', 'oci'"))
        }
    }

    @Test func commonValidation() throws {
        let spec = BackendSpec(backendID: "b", droneID: "d", image: "i", network: .bridge(network: nil))
        let hostOnly = DescribedOnlyRuntime(name: "h")
        let error = try #require(throws: RuntimeError.self) { try hostOnly.validate(spec) }
        #expect(error.code == .invalidSpec && error.message.contains("supports: host"))
        var withMount = BackendSpec(backendID: "b", droneID: "d", image: "i", network: .host(address: "127.0.0.1"))
        withMount.mounts = [MountSpec(kind: .bind, source: "/a", target: "/b")]
        #expect(throws: RuntimeError.self) { try hostOnly.validate(withMount) }
        var withOptions = BackendSpec(backendID: "b", droneID: "d", image: "i", network: .host(address: "127.0.0.1"))
        withOptions.options = JSONObject([("gpu", .bool(true))])
        #expect(throws: RuntimeError.self) { try hostOnly.validate(withOptions) }
        #expect(throws: Never.self) { try DescribedOnlyRuntime(name: "o", options: true).validate(withOptions) }
    }
}

struct BackendSpecTests {
    @Test func portAlwaysWinsInTheEnvironment() {
        let spec = BackendSpec(backendID: "b", droneID: "d", image: "i", env: ["PORT": "1", "A": "b"], port: 9123, network: .host(address: "127.0.0.1"))
        #expect(spec.effectiveEnvironment == ["PORT": "9123", "A": "b"])
    }

    @Test func containerNames() {
        #expect(BackendSpec.containerName(for: "abc") == "plane-abc")
        #expect(BackendSpec.backendID(fromContainerName: "/plane-abc") == "abc")
        #expect(BackendSpec.backendID(fromContainerName: "other") == nil)
        #expect(BackendSpec.backendID(fromContainerName: "plane-Not_Valid") == nil)
    }

    @Test func wireLimitsGetCorrectUnits() throws {
        let wire = ResourceLimits(cpuPeriod: 1, cpuPeriodPercent: 50, cpuTimeLimit: 120, memoryLimitBytes: 1 << 28)
        let limits = try ResourceLimitsSpec(wire: wire, pidsLimit: 256)
        #expect(limits.cpuPeriodMicroseconds == 1_000_000)
        #expect(limits.cpuQuotaMicroseconds == 500_000)
        #expect(limits.cpuTimeLimitSeconds == 120, "seconds, not v0.3.10's minutes")
        #expect(limits.memoryBytes == 1 << 28)
        #expect(limits.pidsLimit == 256)
        let percentOnly = try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriodPercent: 25))
        #expect(percentOnly.cpuPeriodMicroseconds == 100_000 && percentOnly.cpuQuotaMicroseconds == 25_000)
        #expect(try ResourceLimitsSpec(wire: ResourceLimits()) == ResourceLimitsSpec())
    }

    /// Any integer a client can put into the wire's limits converts or is a named error:
    /// v0.3's unit of `cpu_period` (seconds) times 1e6 overflowed for large values, and the
    /// arithmetic trap stopped every drone the scheduler offered the request to.
    @Test(arguments: [UInt64(9_223_372_036_855), UInt64(Int64.max), UInt64.max, UInt64(Int64.max) + 1])
    func hugeWireValuesAreErrorsNotTraps(seconds: UInt64) throws {
        let period = try #require(throws: RuntimeError.self) { try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriod: DurationSeconds(seconds), cpuPeriodPercent: 255)) }
        #expect(period.code == .invalidSpec && period.message.contains("cpu_period"))
        #expect(throws: PlaneCoreError.self) { try ResourceLimits(cpuPeriod: DurationSeconds(seconds)).check() }
        if seconds > UInt64(Int64.max) {
            let time = try #require(throws: RuntimeError.self) { try ResourceLimitsSpec(wire: ResourceLimits(cpuTimeLimit: DurationSeconds(seconds))) }
            #expect(time.message.contains("cpu_time_limit"))
            #expect(throws: PlaneCoreError.self) { try ResourceLimits(cpuTimeLimit: DurationSeconds(seconds)).check() }
        } else {
            // In range for the conversion (an hour of CPU or a century: the client's choice).
            #expect(try ResourceLimitsSpec(wire: ResourceLimits(cpuTimeLimit: DurationSeconds(seconds))).cpuTimeLimitSeconds == seconds)
        }
        // The largest percentage of the largest period still converts.
        #expect(try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriod: 1, cpuPeriodPercent: 255)).cpuQuotaMicroseconds == 2_550_000)
        try ResourceLimits(cpuPeriod: 1, cpuPeriodPercent: 255, cpuTimeLimit: 1, memoryLimitBytes: Int64.max).check()
        #expect(throws: PlaneCoreError.self) { try ResourceLimits(memoryLimitBytes: Int64.min).check() }
        #expect(throws: PlaneCoreError.self) { try ResourceLimits(cpuPeriodPercent: 0).check() }
    }

    @Test func limitsTheKernelWouldRefuseAreInvalid() throws {
        try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriod: 1, cpuPeriodPercent: 200, cpuTimeLimit: 1, memoryLimitBytes: 6 << 20), pidsLimit: 1).validate()
        let refused: [ResourceLimitsSpec] = [
            try ResourceLimitsSpec(wire: ResourceLimits(memoryLimitBytes: 1 << 20)),
            try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriod: 2)),
            try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriod: 0)),
            try ResourceLimitsSpec(wire: ResourceLimits(cpuPeriodPercent: 0)),
            try ResourceLimitsSpec(wire: ResourceLimits(cpuTimeLimit: 0)),
            try ResourceLimitsSpec(wire: ResourceLimits(), pidsLimit: 0),
        ]
        for limits in refused {
            #expect(throws: RuntimeError.self, "\(limits)") { try limits.validate() }
        }
        // The shared runtime checks apply them, as every runtime's validate does.
        let runtime = DescribedOnlyRuntime(name: "x")
        var spec = BackendSpec(backendID: "abc", droneID: "d", image: "i", network: .host(address: "127.0.0.1"))
        try runtime.validate(spec)
        spec.limits = refused[0]
        #expect(throws: RuntimeError.self) { try runtime.validate(spec) }
        spec.limits = ResourceLimitsSpec()
        spec.port = 0
        #expect(throws: RuntimeError.self) { try runtime.validate(spec) }
    }

    @Test func wireMounts() throws {
        let mount = try MountSpec(wire: VolumeMount(type: "bind", source: "/srv", target: "/data", readOnly: true))
        #expect(mount == MountSpec(kind: .bind, source: "/srv", target: "/data", readOnly: true))
        #expect(throws: RuntimeError.self) { try MountSpec(wire: VolumeMount(type: "npipe", source: "/a", target: "/b")) }
        #expect(throws: RuntimeError.self) { try MountSpec(wire: VolumeMount(type: "bind", source: "/a", target: "relative")) }
        #expect(throws: RuntimeError.self) { try MountSpec(wire: VolumeMount(type: "bind", source: "", target: "/b")) }
        #expect(try MountSpec(wire: VolumeMount(type: "tmpfs", source: "", target: "/tmp")).kind == .tmpfs)
    }

    @Test func memoryPercent() {
        #expect(ResourceSample(cpuPercent: 0, memoryBytes: 50, memoryLimitBytes: 200).memoryPercent == 25)
        #expect(ResourceSample(cpuPercent: 0, memoryBytes: 50, memoryLimitBytes: 0).memoryPercent == 0)
    }
}
