import ContainerRuntime
import Foundation
import Logging
import PlaneCore
import PlaneTestSupport
import ProcessSupervision
import Testing
@testable import DockerRuntime

/// Backends on Docker are isolated from each other by default: the drone's own bridge
/// network with inter-container traffic off, no published ports, no raw sockets. v0.3.10's
/// named network is honoured; host networking is an opt-in without raw sockets. Every
/// network here is this test's own (its name and a subnet of 10.215.0.0/16, beside the default network's 10.214.0.0/16), removed at
/// the end.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct DockerNetworkIsolationTests {
    static let docker = SystemProgram("docker", debianPackage: "docker.io")
    /// CAP_NET_RAW's bit in /proc/self/status's capability masks.
    static let netRawBit: UInt64 = 1 << 13

    func runtime(_ network: DockerRuntimeConfiguration.Network, drone: DroneID = .random()) async throws -> DockerRuntime {
        var configuration = DockerRuntimeConfiguration()
        configuration.endpoint = DockerTestSetup.endpoint
        configuration.network = network
        return try await DockerRuntime.make(configuration: configuration, droneID: drone, logger: Logger(label: "test.docker"))
    }

    func start(_ runtime: DockerRuntime, image: String) async throws -> (BackendSpec, HTTPProbe) {
        let network: NetworkPlan = runtime.descriptor.capabilities.networkModes.contains(.host) ? .host(address: "127.0.0.1") : .bridge(network: nil)
        let spec = BackendSpec(backendID: .random(), droneID: runtime.droneID, image: image, port: UInt16(try TestEnvironment.freePort()), network: network)
        let handle = try await runtime.start(spec)
        let address = try #require(handle.address)
        let http = HTTPProbe(host: address.host, port: Int(address.port))
        #expect(try await http.waitUntilAnswering("/").body == "Hello World!")
        return (spec, http)
    }

    func effectiveCapabilities(_ http: HTTPProbe) async throws -> UInt64 {
        let body = try await http.get("/probe/sandbox").body
        let probe = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: String], "probe answered \(body)")
        return try #require(UInt64(probe["CapEff"] ?? "", radix: 16))
    }

    func removeNetwork(_ name: String) async {
        _ = try? await Self.docker.run(["network", "rm", name])
    }

    /// "Beyond the drone's host": a network namespace `name` behind a veth link, the host's
    /// end `{network}.1/24`, the namespace's `eth0` with `{network}.{address}` for each of
    /// `addresses`, routed back through the host's end. The caller deletes it.
    func makeOutsideNamespace(_ name: String, network: String, addresses: [Int]) async throws {
        var commands = [["netns", "add", name], ["link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name],
                        ["addr", "add", "\(network).1/24", "dev", name], ["link", "set", name, "up"], ["-netns", name, "link", "set", "lo", "up"]]
        commands += addresses.map { ["-netns", name, "addr", "add", "\(network).\($0)/24", "dev", "eth0"] }
        commands += [["-netns", name, "link", "set", "eth0", "up"], ["-netns", name, "route", "add", "default", "via", "\(network).1"]]
        for arguments in commands { _ = try await SystemProgram.run(executable: "/usr/sbin/ip", arguments) }
    }

    static func uniqueName(_ prefix: String) -> String { "\(prefix)-\(UInt32.random(in: 0...UInt32.max))" }

    @Test func backendsOnTheManagedNetworkCannotReachEachOther() async throws {
        let name = Self.uniqueName("plane-test-isolated")
        let runtime = try await runtime(.managed(name: name, subnet: "10.215.251.0/24"))
        let image = try await DockerTestImage.shared.ensureLoaded()
        var started: [BackendID] = []
        do {
            #expect(runtime.descriptor.capabilities.networkModes == [.bridge])
            let (first, a) = try await start(runtime, image: image)
            started.append(first.backendID)
            let (second, b) = try await start(runtime, image: image)
            started.append(second.backendID)
            // Each has an address of its own on the network; the drone reaches both.
            #expect(a.host.hasPrefix("10.215.251.") && b.host.hasPrefix("10.215.251.") && a.host != b.host)
            let fromA = try await a.get("/probe/connect/\(b.host)/\(b.port)").body
            #expect(fromA.hasPrefix("error: "), "a backend reached its neighbour: \(fromA)")
            #expect(try await b.get("/probe/connect/\(a.host)/\(a.port)").body.hasPrefix("error: "))
            #expect(try await b.get("/probe/connect/\(b.host)/\(b.port)").body == "connected", "its own address works")
            #expect(try await effectiveCapabilities(a) & Self.netRawBit == 0, "no raw sockets")
            let inspect = try await Self.docker.run(["network", "inspect", name])
            let options = try #require(try JSONParser.parse(inspect).arrayValue?.first?.objectValue?["Options"]?.objectValue)
            #expect(options[DockerNetworkSetup.interContainerOption]?.stringValue == "false")
            // A second drone on the same daemon uses the network as it is.
            _ = try await self.runtime(.managed(name: name, subnet: "10.215.251.0/24"))
        } catch {
            Issue.record("\(error)")
        }
        for backend in started {
            try? await runtime.stop(backend, grace: .seconds(1))
            try? await runtime.remove(backend)
        }
        await removeNetwork(name)
    }

    /// Drones sharing a daemon start together (a host's boot, a fleet's rollout): each finds
    /// the managed network missing and creates it. dockerd refuses all but one, some as
    /// "Pool overlaps" while the winner's network is not yet visible; every drone must come
    /// up on the one network. Several rounds, each on a fresh name, to meet that window.
    @Test func dronesOfOneDaemonCreatingTheNetworkAtOnceAllComeUp() async throws {
        for _ in 0..<4 {
            let name = Self.uniqueName("plane-test-together")
            await withTaskGroup(of: String?.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        do {
                            _ = try await self.runtime(.managed(name: name, subnet: "10.215.239.0/24"))
                            return nil
                        } catch {
                            return "\(error)"
                        }
                    }
                }
                for await failure in group {
                    if let failure { Issue.record("a drone did not come up: \(failure)") }
                }
            }
            let listed = try await Self.docker.run(["network", "ls", "--filter", "name=\(name)", "--format", "{{.Name}}"])
            #expect(listed.split(separator: "\n").filter { $0 == name }.count == 1, "one network: \(listed)")
            await removeNetwork(name)
        }
    }

    @Test func aNamedNetworkIsUsedAndMustExist() async throws {
        let name = Self.uniqueName("plane-test-named")
        do {
            _ = try await runtime(.named(name))
            Issue.record("a drone started on a network that does not exist")
        } catch let error as RuntimeError {
            #expect(error.message.contains("does not exist") && error.message.contains("docker network create \(name)"))
        }
        _ = try await Self.docker.run(["network", "create", "--subnet", "10.215.252.0/24", name])
        do {
            let runtime = try await runtime(.named(name))
            let (spec, http) = try await start(runtime, image: try await DockerTestImage.shared.ensureLoaded())
            #expect(http.host.hasPrefix("10.215.252."), "reached at its address on the named network: \(http.host)")
            let inspect = try await Self.docker.run(["inspect", spec.containerName])
            let host = try JSONParser.parse(inspect).arrayValue?.first?.objectValue?["HostConfig"]?.objectValue
            #expect(host?["NetworkMode"]?.stringValue == name)
            try? await runtime.stop(spec.backendID, grace: .seconds(1))
            try? await runtime.remove(spec.backendID)
        } catch {
            Issue.record("\(error)")
        }
        await removeNetwork(name)
    }

    @Test func anExistingNetworkThatDoesNotIsolateIsRefused() async throws {
        let name = Self.uniqueName("plane-test-open")
        _ = try await Self.docker.run(["network", "create", "--subnet", "10.215.253.0/24", name])
        do {
            _ = try await runtime(.managed(name: name, subnet: "10.215.253.0/24"))
            Issue.record("a network with inter-container traffic on was used for backends")
        } catch let error as RuntimeError {
            #expect(error.code == .invalidSpec && error.message.contains(DockerNetworkSetup.interContainerOption))
        }
        await removeNetwork(name)
    }

    /// `egress = "deny"`: the drone's network is internal, backends reach nothing beyond the
    /// drone's host; with the default they do. "Beyond" is a network namespace of this
    /// test's own behind a veth link (10.215.241.0/24), with a listener in it.
    @Test func egressCanBeDenied() async throws {
        let outside = "pltegress\(UInt16.random(in: 0...UInt16.max))"
        let ip = "/usr/sbin/ip"
        try await makeOutsideNamespace(outside, network: "10.215.241", addresses: [2])
        let listener = try ChildProcess("/usr/sbin/ip", arguments: ["netns", "exec", outside, "env", "PORT=8080", "HOST=10.215.241.2", try TestExecutables.path("plane-test-server")])
        let open = Self.uniqueName("plane-test-egress")
        let closed = Self.uniqueName("plane-test-internal")
        var started: [(DockerRuntime, BackendID)] = []
        do {
            _ = try await HTTPProbe(host: "10.215.241.2", port: 8080).waitUntilAnswering("/")
            let image = try await DockerTestImage.shared.ensureLoaded()
            var results: [Bool: String] = [:]
            for (name, subnet, egress) in [(open, "10.215.242.0/24", EgressPolicy.allowAll), (closed, "10.215.243.0/24", .denyAll)] {
                var configuration = DockerRuntimeConfiguration()
                configuration.endpoint = DockerTestSetup.endpoint
                configuration.network = .managed(name: name, subnet: subnet)
                configuration.egress = egress
                let runtime = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
                let (spec, http) = try await start(runtime, image: image)
                started.append((runtime, spec.backendID))
                results[egress == .allowAll] = try await http.get("/probe/connect/10.215.241.2/8080").body
            }
            #expect(results[true] == "connected", "with egress allowed: \(results[true] ?? "?")")
            #expect(results[false]?.hasPrefix("error: ") == true, "with egress denied: \(results[false] ?? "?")")
            let inspect = try await Self.docker.run(["network", "inspect", closed])
            #expect(try JSONParser.parse(inspect).arrayValue?.first?.objectValue?["Internal"]?.boolValue == true)
            // A drone configured the other way refuses the existing network.
            var mismatched = DockerRuntimeConfiguration()
            mismatched.endpoint = DockerTestSetup.endpoint
            mismatched.network = .managed(name: closed, subnet: "10.215.243.0/24")
            await #expect(throws: RuntimeError.self) { _ = try await DockerRuntime.make(configuration: mismatched, droneID: .random(), logger: Logger(label: "test.docker")) }
        } catch {
            Issue.record("\(error)")
        }
        for (runtime, backend) in started {
            try? await runtime.stop(backend, grace: .seconds(1))
            try? await runtime.remove(backend)
        }
        listener.signal(SIGKILL)
        _ = await listener.waitForExit(timeout: .seconds(5))
        await removeNetwork(open)
        await removeNetwork(closed)
        _ = try? await SystemProgram.run(executable: ip, ["link", "delete", outside])
        _ = try? await SystemProgram.run(executable: ip, ["netns", "delete", outside])
    }

    /// `egress = [networks]`: backends reach the listed networks and nothing else beyond the
    /// drone's host, through the drone's chain in DOCKER-USER; a drone restarted with
    /// `allow` removes the chain. "Beyond" is a namespace of this test's own
    /// (10.215.244.2 and .3, one listener on both).
    @Test func egressAllowListsLetBackendsReachOnlyThoseNetworks() async throws {
        let outside = "pltallow\(UInt16.random(in: 0...UInt16.max))"
        let ip = "/usr/sbin/ip"
        try await makeOutsideNamespace(outside, network: "10.215.244", addresses: [2, 3])
        let listener = try ChildProcess(ip, arguments: ["netns", "exec", outside, "env", "PORT=8080", "HOST=0.0.0.0", try TestExecutables.path("plane-test-server")])
        let name = Self.uniqueName("plane-test-allow")
        let firewall = try EgressFirewall.make(logger: Logger(label: "test.egress"))
        var bridge: String?
        var started: [(DockerRuntime, BackendID)] = []
        do {
            _ = try await HTTPProbe(host: "10.215.244.2", port: 8080).waitUntilAnswering("/")
            let image = try await DockerTestImage.shared.ensureLoaded()
            var configuration = DockerRuntimeConfiguration()
            configuration.endpoint = DockerTestSetup.endpoint
            configuration.network = .managed(name: name, subnet: "10.215.245.0/24")
            configuration.egress = .allowList([try IPv4Subnet("10.215.244.2/32")])
            let runtime = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
            let inspect = try JSONParser.parse(try await Self.docker.run(["network", "inspect", name])).arrayValue?.first?.objectValue ?? JSONObject()
            bridge = DockerNetworkSetup.bridgeName(inspect)
            #expect(inspect["Internal"]?.boolValue == false, "an allow list needs Docker's way out")
            let (first, http) = try await start(runtime, image: image)
            let (second, other) = try await start(runtime, image: image)
            started += [(runtime, first.backendID), (runtime, second.backendID)]
            #expect(try await http.get("/probe/connect/10.215.244.2/8080").body == "connected", "the listed network")
            #expect(try await http.get("/probe/connect/10.215.244.3/8080").body.hasPrefix("error: "), "an address not listed")
            #expect(try await http.get("/probe/connect/\(other.host)/\(other.port)").body.hasPrefix("error: "), "the neighbour")
            let chain = EgressFirewall.chain(for: .docker(bridge: bridge ?? "?"))
            #expect(try await SystemProgram.run(executable: "/usr/sbin/iptables", ["-S", "DOCKER-USER"]).output.contains("-j \(chain)"))

            // The drone restarted with `allow`: the chain goes, everything is reachable.
            configuration.egress = .allowAll
            _ = try await DockerRuntime.make(configuration: configuration, droneID: .random(), logger: Logger(label: "test.docker"))
            #expect(!(try await SystemProgram.run(executable: "/usr/sbin/iptables", ["-S", "DOCKER-USER"]).output.contains(chain)))
            #expect(try await http.get("/probe/connect/10.215.244.3/8080").body == "connected")
        } catch {
            Issue.record("\(error)")
        }
        for (runtime, backend) in started {
            try? await runtime.stop(backend, grace: .seconds(1))
            try? await runtime.remove(backend)
        }
        if let bridge { await firewall.remove(placement: .docker(bridge: bridge)) }
        listener.signal(SIGKILL)
        _ = await listener.waitForExit(timeout: .seconds(5))
        await removeNetwork(name)
        _ = try? await SystemProgram.run(executable: ip, ["link", "delete", outside])
        _ = try? await SystemProgram.run(executable: ip, ["netns", "delete", outside])
    }

    @Test func hostNetworkingIsAnOptInWithoutRawSockets() async throws {
        let runtime = try await runtime(.host)
        #expect(runtime.descriptor.capabilities.networkModes == [.host])
        let (spec, http) = try await start(runtime, image: try await DockerTestImage.shared.ensureLoaded())
        #expect(http.host == "127.0.0.1")
        #expect(try await effectiveCapabilities(http) & Self.netRawBit == 0)
        // The drone can tell the listener on the port is the container's own.
        let main = try #require(try await runtime.mainProcessID(of: spec.backendID))
        #expect(ListenerOwnership.check(port: spec.port, mainProcess: main) == .owned)
        #expect(ListenerOwnership.check(port: spec.port, mainProcess: getpid()) == .foreign)
        try? await runtime.stop(spec.backendID, grace: .seconds(1))
        try? await runtime.remove(spec.backendID)
    }
}
