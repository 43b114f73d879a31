import ArgumentParser
import Foundation
import ImageBuilder
import Logging
import NATS
import PlaneACME
import PlaneController
import PlaneCore
import PlaneDNS
import PlaneDrone
import PlaneProxy
import ServiceLifecycle

/// `plane dev`: a complete cluster on this machine, in the foreground — nats-server (a
/// child process), a controller (scheduler, DNS, HTTP API), a drone on Docker (or the OCI
/// runtime when no Docker daemon answers) with its HTTPS proxy and a certificate from a
/// local CA, and the demo image. Ctrl-C stops everything, backends included. One `plane
/// dev` per state directory (`DevStateLock`); its nats-server ends with it even when it is
/// killed, and one left by an older version is stopped at the next start.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a complete local cluster in the foreground (NATS, controller, drone, HTTPS proxy, demo image).",
        discussion: "Backends are served at https://{backend}.{cluster}:{port}; *.localhost names reach 127.0.0.1 without DNS setup. Ctrl-C stops everything."
    )

    @Option(name: .long, help: "The cluster name.") var cluster = "plane.localhost"
    @Option(name: .long, help: "The drone's runtime: auto (Docker when its daemon answers, else oci), docker or oci.") var runtime = "auto"
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
        let runtimeName = try chooseRuntime()
        try FileManager.default.createDirectory(atPath: stateDir, withIntermediateDirectories: true)
        // Held until this process ends: no second plane dev on this store.
        let stateLock = try DevStateLock.acquire(stateDirectory: stateDir)
        defer { withExtendedLifetime(stateLock) {} }

        // Certificates from the local CA, for *.{cluster} and {cluster}.
        let authority = try LocalCertificateAuthority.openOrCreate(in: stateDir + "/ca")
        let files = CertificateFiles(keyPath: stateDir + "/tls/key.pem", certificatePath: stateDir + "/tls/cert.pem")
        try authority.issue(names: ["*.\(clusterName)", clusterName.rawValue], to: files)

        let image = try demoImage(runtime: runtimeName)
        let nats = try await DevNATSServer.start(directory: stateDir + "/nats", preferredPort: natsPort, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: nats)]
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
            http.services = ["demo": HTTPServiceConfiguration(image: image)]
            controllerConfiguration.http = http
            let controllerClient = try NATSClient(configuration: natsConfiguration, logger: Logger(label: "plane.nats"))
            try await controllerClient.connect()
            let controller = Controller(configuration: controllerConfiguration, client: controllerClient, logger: Logger(label: "plane.controller"))
            try await controller.start()
            services += [.init(service: controllerClient), .init(service: controller)]

            // The drone: backends stop with it (drain on shutdown).
            var droneConfiguration = DroneConfiguration(cluster: clusterName)
            droneConfiguration.stateDirectory = stateDir + "/drone"
            try FileManager.default.createDirectory(atPath: droneConfiguration.stateDirectory, withIntermediateDirectories: true)
            droneConfiguration.nats = natsConfiguration
            var agent = AgentConfiguration(ip: .literal("127.0.0.1"))
            agent.runtime = runtimeName
            agent.drainOnShutdown = true
            agent.stopGrace = .seconds(2)
            droneConfiguration.agent = agent
            var proxy = ProxyConfiguration()
            proxy.bindHost = "127.0.0.1"
            proxy.httpsPort = try DevPrerequisites.port(preferred: httpsPort)
            droneConfiguration.proxy = proxy
            droneConfiguration.certificate = files
            services += try await DroneServices.make(droneConfiguration, logger: Logger(label: "plane.drone"))
            let droneID = try DroneIdentity.load(stateDirectory: droneConfiguration.stateDirectory)

            printReady(cluster: clusterName, nats: nats.url, httpPort: http.port, httpsPort: proxy.httpsPort ?? 0, ca: authority.certificatePath,
                       image: image, runtime: runtimeName, drone: droneID.rawValue, dnsPort: controller.dnsServer?.boundAddress?.port ?? 0)
        } catch {
            nats.stop()
            throw error
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }

    /// `auto`: Docker when its daemon answers, else the OCI runtime when runc or crun is
    /// installed; otherwise an error naming the packages.
    func chooseRuntime() throws -> String {
        switch runtime {
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

    func printReady(cluster: ClusterName, nats: String, httpPort: Int, httpsPort: Int, ca: String, image: String, runtime: String, drone: String, dnsPort: Int) {
        if json {
            let object: [String: Any] = ["cluster": cluster.rawValue, "nats": nats, "http_api": "http://127.0.0.1:\(httpPort)", "https_port": httpsPort,
                                         "ca": ca, "image": image, "runtime": runtime, "drone": drone, "dns_port": dnsPort]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) {
                print(String(decoding: data, as: UTF8.self))
            }
        } else {
            print("""
                Plane dev cluster '\(cluster)' is ready (runtime: \(runtime), drone: \(drone)).
                  NATS:      \(nats)
                  HTTP API:  http://127.0.0.1:\(httpPort)
                  Backends:  https://{backend}.\(cluster):\(httpsPort)
                  DNS:       dig @127.0.0.1 -p \(dnsPort) {backend}.\(cluster)
                  Local CA:  \(ca)
                             (curl --cacert \(ca) ..., or import it into your browser's trusted authorities)

                Spawn the demo backend:
                  plane spawn \(cluster) \(image)\(nats == "nats://127.0.0.1:4222" ? "" : " --nats \(nats)")
                  curl -X POST -d '{}' http://127.0.0.1:\(httpPort)/service/demo/spawn
                then open the URL it prints (with :\(httpsPort)). Ctrl-C stops everything.
                """)
        }
        fflush(nil)
    }
}
