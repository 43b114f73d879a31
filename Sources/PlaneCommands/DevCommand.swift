import ArgumentParser
import Foundation
import ImageBuilder
import Logging
import NATS
import PlaneACME
import PlaneController
import PlaneCore
import PlaneMetrics
import PlaneDNS
import PlaneDrone
import PlaneProxy
import ServiceLifecycle

/// `plane dev`: a complete cluster on this machine, in the foreground — nats-server (a
/// child process), a controller (scheduler, DNS, HTTP API), a drone on Docker (or the OCI
/// runtime when no Docker daemon answers) with its HTTPS proxy and a certificate from a
/// local CA, and the demo image. Ctrl-C stops everything, backends included. One `plane
/// dev` per state directory (`DevStateLock`); its nats-server ends with it even when it is
/// killed, and one left by an older version is stopped at the next start. Killed (SIGKILL),
/// its backends are ended by `plane dev-reaper`, which it started to watch it.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a complete local cluster in the foreground (NATS, controller, drone, HTTPS proxy, demo image).",
        discussion: "Backends are served at https://{backend}.{cluster}:{port}; *.localhost names reach 127.0.0.1 without DNS setup. Ctrl-C stops everything."
    )

    @Option(name: .long, help: "The cluster name.") var cluster = "plane.localhost"
    @Option(name: .long, help: "The drone's runtime: auto (Docker when its daemon answers, else oci), docker or oci.") var runtime = "auto"
    @Option(name: .long, help: "How many drones (1-8), each with its own HTTPS proxy port and state.") var drones = 1
    @Option(name: .long, help: "The drones' runtimes, comma-separated, taken in turn (docker, oci, process); default: --runtime.") var runtimes: String?
    @Option(name: .long, help: "The HTTPS port of the proxy (a free one when taken or 0).") var httpsPort = 8443
    @Option(name: .long, help: "The port of the controller's HTTP API (a free one when taken or 0).") var httpPort = 9090
    @Option(name: .long, help: "The NATS port (the CLI's default 4222, so `plane spawn` needs no --nats; a free one when taken or 0).") var natsPort = 4222
    @Option(name: .long, help: "Where the cluster keeps its state (the local CA is reused from here).") var stateDir = NSTemporaryDirectory() + "plane-dev"
    @Flag(name: .long, help: "Print the ready line as JSON (for scripts).") var json = false

    func run() async throws {
        LoggingSystem.bootstrapPlane()
        var logger = Logger(label: "plane.dev")
        logger.logLevel = .notice
        do {
            try await start(logger: logger)
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    func start(logger: Logger) async throws {
        let clusterName: ClusterName
        do { clusterName = try ClusterName(cluster) } catch { throw ValidationError(error.message) }
        guard (1...8).contains(drones) else { throw ValidationError("--drones must be 1 to 8") }
        let runtimeNames = try chooseRuntimes()
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        // Held until this process ends: no second plane dev on this store.
        let stateLock = try DevStateLock.acquire(stateDirectory: stateDir)
        defer { withExtendedLifetime(stateLock) {} }

        // Certificates from the local CA, for *.{cluster} and {cluster}.
        let authority = try LocalCertificateAuthority.openOrCreate(in: stateDir + "/ca")
        let files = CertificateFiles(keyPath: stateDir + "/tls/key.pem", certificatePath: stateDir + "/tls/cert.pem")
        try authority.issue(names: ["*.\(clusterName)", clusterName.rawValue], to: files)

        var images: [String: String] = [:]
        for name in Set(runtimeNames) { images[name] = try demoImage(runtime: name) }
        let mixed = Set(runtimeNames).count > 1
        let nats = try await DevNATSServer.start(directory: stateDir + "/nats", preferredPort: natsPort, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: nats)]
        var reaper: pid_t?
        defer { if let reaper { DevReaperCommand.stop(reaper) } }
        do {
            let natsConfiguration = try NATSClientConfiguration(urls: [nats.url], name: "plane-dev")
            // The controller.
            var controllerConfiguration = ControllerConfiguration(nats: natsConfiguration, scheduler: SchedulerConfiguration())
            var dns = ControllerDNSConfiguration()
            dns.server = DNSServerConfiguration(bindHost: "127.0.0.1", port: 0)
            dns.zones = [try DNSName(clusterName.rawValue)]
            controllerConfiguration.dns = dns
            var http = HTTPAPIConfiguration(cluster: clusterName)
            http.bindHost = "127.0.0.1"
            http.port = try DevPrerequisites.port(preferred: httpPort)
            // `demo` runs the first drone's kind; with several runtimes each has its own
            // `demo-{runtime}`, and every service names its runtime class (the drones of
            // that runtime have it), since an image is of one kind.
            func service(_ runtime: String) throws -> HTTPServiceConfiguration {
                var service = HTTPServiceConfiguration(image: images[runtime] ?? "")
                if mixed { service.runtimeClass = try FleetLabel(runtime) }
                return service
            }
            http.services = ["demo": try service(runtimeNames[0])]
            if mixed { for name in Set(runtimeNames) { http.services["demo-\(name)"] = try service(name) } }
            controllerConfiguration.http = http
            let controllerClient = try NATSClient(configuration: natsConfiguration, logger: Logger(label: "plane.nats"))
            try await controllerClient.connect()
            // One registry for the process: the controller's and every drone's /metrics show it.
            let registry = PlaneMetrics()
            registry.bootstrapMetricsSystem()
            let controller = Controller(configuration: controllerConfiguration, client: controllerClient, registry: registry, logger: Logger(label: "plane.controller"))
            try await controller.start()
            services += [.init(service: controllerClient), .init(service: controller)]

            // The drones: backends stop with them (drain on shutdown).
            var started: [DevDrone] = []
            var droneDirectories: [String] = []
            for (index, runtimeName) in runtimeNames.enumerated() {
                var droneConfiguration = DroneConfiguration(cluster: clusterName)
                droneConfiguration.stateDirectory = stateDir + (index == 0 ? "/drone" : "/drone-\(index + 1)")
                droneDirectories.append(droneConfiguration.stateDirectory)
                try FileManager.default.createDirectory(atPath: droneConfiguration.stateDirectory, withIntermediateDirectories: true)
                droneConfiguration.nats = natsConfiguration
                var agent = AgentConfiguration(ip: .literal("127.0.0.1"))
                agent.runtime = runtimeName
                if mixed { agent.runtimeClasses = [try FleetLabel(runtimeName)] }
                agent.drainOnShutdown = true
                agent.stopGrace = .seconds(2)
                // Host ports of different drones must not meet.
                if runtimeNames.count > 1 { agent.portRange = (20000 + index * 1000)...(20999 + index * 1000) }
                droneConfiguration.agent = agent
                var proxy = ProxyConfiguration()
                proxy.bindHost = "127.0.0.1"
                proxy.httpsPort = try index == 0 ? DevPrerequisites.port(preferred: httpsPort) : DevPrerequisites.freePort()
                droneConfiguration.proxy = proxy
                droneConfiguration.certificate = files
                services += try await DroneServices.make(droneConfiguration, registry: registry, logger: Logger(label: "plane.drone"))
                let droneID = try DroneIdentity.load(stateDirectory: droneConfiguration.stateDirectory)
                started.append(DevDrone(id: droneID.rawValue, runtime: runtimeName, httpsPort: proxy.httpsPort ?? 0))
            }

            // Ends the backends if this process is killed before its own shutdown does.
            reaper = try DevReaperCommand.start(drones: zip(runtimeNames, droneDirectories).map { ($0, $1) }, log: stateDir + "/dev-reaper.log")
            services.append(.init(service: ReadyLine(text: readyText(cluster: clusterName, nats: nats.url, httpPort: http.port, ca: authority.certificatePath,
                                                                     image: images[runtimeNames[0]] ?? "", drones: started,
                                                                     dnsPort: controller.dnsServer?.boundAddress?.port ?? 0))))
        } catch {
            nats.stop()
            throw error
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// A drone of the local cluster, for the ready line.
    struct DevDrone {
        var id: String
        var runtime: String
        var httpsPort: Int
    }

    /// The runtime of each drone: `--runtimes` taken in turn, else `--runtime` for all.
    func chooseRuntimes() throws -> [String] {
        guard let runtimes else { return Array(repeating: try chooseRuntime(), count: drones) }
        let names = runtimes.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !names.isEmpty else { throw ValidationError("--runtimes lists no runtime; name docker, oci or process") }
        for name in Set(names) {
            switch name {
            case "docker", "oci": _ = try chooseRuntime(name)
            case "process": break  // the drone finds the plugin (runtimes/process) and says so when it cannot
            default: throw ValidationError("--runtimes: '\(name)' is not docker, oci or process")
            }
        }
        return (0..<drones).map { names[$0 % names.count] }
    }

    /// `auto`: Docker when its daemon answers, else the OCI runtime when runc or crun is
    /// installed; otherwise an error naming the packages.
    func chooseRuntime(_ requested: String? = nil) throws -> String {
        switch requested ?? runtime {
        case "docker":
            guard DevPrerequisites.dockerAnswers() else { throw DevError("no Docker daemon answers at /var/run/docker.sock; start dockerd (apt-get install -y docker.io) or use --runtime oci") }
            return "docker"
        case "oci":
            guard DevPrerequisites.has("runc") || DevPrerequisites.has("crun") else { throw DevError("neither runc nor crun is installed; install one with: apt-get install -y crun") }
            return "oci"
        case "auto":
            if DevPrerequisites.dockerAnswers() { return "docker" }
            if DevPrerequisites.has("runc") || DevPrerequisites.has("crun") { return "oci" }
            throw DevError("no runtime: no Docker daemon answers and neither runc nor crun is installed; install one with: apt-get install -y docker.io (and start dockerd) or apt-get install -y crun")
        default:
            throw ValidationError("--runtime must be auto, docker or oci")
        }
    }

    /// The demo backend's image, built from `plane-test-server` next to this executable:
    /// loaded into dockerd (`plane-test-server:dev`) or as an OCI layout for the oci runtime.
    func demoImage(runtime: String) throws -> String {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().appendingPathComponent("plane-test-server").path
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw DevError("the demo backend \(executable) is missing; build it with: swift build --product plane-test-server")
        }
        // The process runtime runs executables, not images.
        if runtime == "process" { return executable }
        let result = try ContainerImageBuilder(executable: executable, name: "plane-test-server", tag: "dev").build(into: stateDir + "/image")
        guard runtime == "docker" else { return "oci-layout:\(result.ociLayout):dev" }
        let docker = try DevPrerequisites.program("docker", package: "docker.io")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: docker)
        process.arguments = ["load", "-q", "-i", result.dockerArchive]
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw DevError("docker load of the demo image failed (status \(process.terminationStatus))") }
        return result.reference
    }

    func readyText(cluster: ClusterName, nats: String, httpPort: Int, ca: String, image: String, drones: [DevDrone], dnsPort: Int) -> String {
        let first = drones[0]
        if json {
            var object: [String: Any] = ["cluster": cluster.rawValue, "nats": nats, "http_api": "http://127.0.0.1:\(httpPort)", "https_port": first.httpsPort,
                                         "ca": ca, "image": image, "runtime": first.runtime, "drone": first.id, "dns_port": dnsPort]
            object["drones"] = drones.map { ["drone": $0.id, "runtime": $0.runtime, "https_port": $0.httpsPort] as [String: Any] }
            guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "{}" }
            return String(decoding: data, as: UTF8.self)
        } else {
            let others = drones.dropFirst().map { "\n  Drone:     \($0.id) (\($0.runtime)), backends on :\($0.httpsPort)" }.joined()
            let services = Set(drones.map(\.runtime)).count > 1
                ? "\n(services demo-\(Set(drones.map(\.runtime)).sorted().joined(separator: ", demo-")) run on the drones of that runtime)" : ""
            return """
                Plane dev cluster '\(cluster)' is ready (runtime: \(first.runtime), drone: \(first.id)).\(others)
                  NATS:      \(nats)
                  HTTP API:  http://127.0.0.1:\(httpPort)
                  Backends:  https://{backend}.\(cluster):\(first.httpsPort)
                  DNS:       dig @127.0.0.1 -p \(dnsPort) {backend}.\(cluster)
                  Local CA:  \(ca)
                             (curl --cacert \(ca) ..., or import it into your browser's trusted authorities)

                Spawn the demo backend:
                  plane spawn \(cluster) \(image)\(nats == "nats://127.0.0.1:4222" ? "" : " --nats \(nats)")\(services.isEmpty ? "" : " --runtime-class \(first.runtime)")
                  curl -X POST -d '{}' http://127.0.0.1:\(httpPort)/service/demo/spawn\(services)
                then open the URL it prints (with :\(first.httpsPort)). Ctrl-C stops everything.
                """
        }
    }

    /// Prints the ready line once the service group runs, so its signal handlers are in
    /// place: a Ctrl-C (or a script's SIGINT) sent the moment the line appears stops the
    /// cluster cleanly instead of killing the process before them.
    struct ReadyLine: Service {
        let text: String

        func run() async throws {
            print(text)
            fflush(nil)
            try? await gracefulShutdown()
        }
    }
}
