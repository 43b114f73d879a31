import Foundation
import Logging
import NIOPosix
import NIOCore
import PlaneProxy

// The proxy alone, for scripts/bench-proxy.sh: serves host `foobar.plane.test` (and path
// routing) to one upstream until killed.
//   ProxyBench <port> <upstream host:port> [<key.pem> <cert.pem>]
// With PROXY_FLOOR=1 it is no proxy but the relay of `RelayFloor` (plain HTTP only).

let arguments = CommandLine.arguments
guard arguments.count == 3 || arguments.count == 5, let port = Int(arguments[1]) else {
    FileHandle.standardError.write(Data("usage: ProxyBench <port> <upstream host:port> [<key.pem> <cert.pem>]\n".utf8))
    exit(64)
}
if ProcessInfo.processInfo.environment["PROXY_FLOOR"] == "1" {
    guard arguments.count == 3, let colon = arguments[2].lastIndex(of: ":"), let upstreamPort = Int(arguments[2][arguments[2].index(after: colon)...]) else {
        FileHandle.standardError.write(Data("ProxyBench: PROXY_FLOOR=1 takes <port> <upstream host:port>\n".utf8))
        exit(64)
    }
    try await RelayFloor.run(port: port, upstreamHost: String(arguments[2][..<colon]), upstreamPort: upstreamPort)
    exit(0)
}
var logger = Logger(label: "bench.proxy")
logger.logLevel = .warning
let routes = RouteTable()
routes.add(RouteTable.Route(backendID: "foobar", address: arguments[2], bearerToken: nil))
var configuration = ProxyConfiguration()
configuration.bindHost = "127.0.0.1"
configuration.httpsPort = port
configuration.allowPathRouting = true
var certificates: TLSCertificateStore?
if arguments.count == 5 {
    let store = TLSCertificateStore(keyPath: arguments[3], certificatePath: arguments[4], logger: logger)
    if let error = store.reload() {
        FileHandle.standardError.write(Data("ProxyBench: \(error)\n".utf8))
        exit(1)
    }
    certificates = store
}
// PROXY_THREADS: event loop threads (default: one per core, as the drone runs it).
let threads = ProcessInfo.processInfo.environment["PROXY_THREADS"].flatMap(Int.init)
let group: any EventLoopGroup = threads.map { MultiThreadedEventLoopGroup(numberOfThreads: $0) } ?? MultiThreadedEventLoopGroup.singleton
let proxy = ProxyServer(cluster: "plane.test", configuration: configuration, routes: routes, certificates: certificates, group: group, logger: logger)
try await proxy.start()
print("ProxyBench: listening on 127.0.0.1:\(port)")
while true { try await Task.sleep(for: .seconds(3600)) }
