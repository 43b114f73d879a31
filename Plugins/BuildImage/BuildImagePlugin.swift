import Foundation
import PackagePlugin

/// `swift package --allow-writing-to-package-directory build-image --product plane-test-server`
///
/// Builds the product and packages it into a container image with `plane-image-builder`:
/// `.build/plane-images/<product>/oci` (OCI image layout) and `<product>.tar` (for
/// `docker load`). Options: `--configuration debug|release` (default release),
/// `--tag TAG` (default latest), `--output DIR`, `--env KEY=VALUE` (repeatable).
@main
struct BuildImagePlugin: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        var extractor = ArgumentExtractor(arguments)
        guard let product = extractor.extractOption(named: "product").first else {
            throw PluginError("Name the executable with --product, e.g. --product plane-test-server.")
        }
        let configuration = extractor.extractOption(named: "configuration").first ?? "release"
        let tag = extractor.extractOption(named: "tag").first ?? "latest"
        let environment = extractor.extractOption(named: "env")
        let output = extractor.extractOption(named: "output").first
            ?? context.package.directoryURL.appendingPathComponent(".build/plane-images/\(product)").path

        var parameters = PackageManager.BuildParameters(configuration: configuration == "debug" ? .debug : .release, logging: .concise)
        if configuration != "debug" {
            // A static Swift runtime and stripped symbols keep the image small: only glibc and friends are copied.
            parameters.otherSwiftcFlags = ["-static-stdlib"]
            parameters.otherLinkerFlags = ["-s"]
        }
        print("build-image: building \(product) (\(configuration))")
        let build = try packageManager.build(.product(product), parameters: parameters)
        guard build.succeeded else {
            throw PluginError("Building \(product) failed:\n\(build.logText)")
        }
        guard let artifact = build.builtArtifacts.first(where: { $0.kind == .executable }) else {
            throw PluginError("\(product) is not an executable product.")
        }
        let tool = try context.tool(named: "plane-image-builder")
        let process = Process()
        process.executableURL = tool.url
        process.arguments = [artifact.url.path, product, output, tag] + environment
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PluginError("plane-image-builder failed with status \(process.terminationStatus).")
        }
        print(String(decoding: data, as: UTF8.self), terminator: "")
    }
}

struct PluginError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
