# Conan 2 recipe for frugal. Mirrors the CMake options; kept out of CI because no Conan client or
# ConanCenter is reachable from the build machines (see README.md here).
from conan import ConanFile
from conan.tools.cmake import CMake, CMakeToolchain, CMakeDeps, cmake_layout
from conan.tools.files import copy
import os


class FrugalConan(ConanFile):
    name = "frugal"
    version = "0.1.0"
    license = "MIT"
    description = "CPU inference of DeepSeek-family models behind a stable C ABI"
    settings = "os", "arch", "compiler", "build_type"
    options = {"shared": [True, False], "fPIC": [True, False], "download": [True, False]}
    default_options = {"shared": True, "fPIC": True, "download": True}

    def export_sources(self):
        # The recipe lives in conan/; the sources are the repository around it.
        root = os.path.join(self.recipe_folder, "..")
        for pattern in ("CMakeLists.txt", "CMakePresets.json", "include/*", "lib/*", "capi/*", "cmake/*",
                        "examples/*", "tests/*", "bindings/CMakeLists.txt"):
            copy(self, pattern, src=root, dst=self.export_sources_folder, excludes=["build/*"])

    def requirements(self):
        self.requires("eigen/3.4.0")
        self.requires("onednn/2.6.3")  # hypothetical pin: Debian 12's version; check ConanCenter's name
        self.requires("fmt/9.1.0")
        self.requires("pcre2/[>=10.42]")          # byte-level BPE pre-tokenizer regexes
        self.requires("utf8proc/[>=2.8]")         # NFC for tokenizers that normalise
        self.requires("nlohmann_json/[>=3.11]")   # tokenizer.json (header-only)
        if self.options.download:
            self.requires("libcurl/[>=7.88]")
            self.requires("openssl/[>=3.0]")

    def build_requirements(self):
        self.test_requires("doctest/2.4.9")
        self.test_requires("simde/[>=0.7.4]")  # tests/ops/quant_avx512_test: AVX-512 kernels, emulated

    def config_options(self):
        if self.settings.os == "Windows":
            del self.options.fPIC

    def layout(self):
        cmake_layout(self)

    def generate(self):
        tc = CMakeToolchain(self)
        tc.variables["BUILD_SHARED_LIBS"] = self.options.shared
        tc.variables["FRUGAL_DOWNLOAD"] = self.options.download
        tc.variables["FRUGAL_BUILD_TESTS"] = False
        tc.variables["FRUGAL_BUILD_EXAMPLES"] = False
        tc.variables["FRUGAL_INSTALL"] = True
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()
        cmake.build()

    def package(self):
        CMake(self).install()

    def package_info(self):
        self.cpp_info.set_property("cmake_file_name", "frugal")
        self.cpp_info.set_property("cmake_target_name", "frugal::frugal")
        self.cpp_info.set_property("pkg_config_name", "frugal")
        self.cpp_info.libs = ["frugal"]
