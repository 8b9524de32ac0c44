// Links against the installed bnoracle::oracle and checks one hand-worked value: x = [1, 3]
// has mean 2 and biased variance 1, so with ε = 0 and γ = 1, β = 0 the outputs are −1 and 1.
#include <bnoracle/reference.hpp>

#include <cstdio>
#include <vector>

int main() {
  bnoracle::bn_problem p;
  p.n = 2;
  p.c = 1;
  p.mem_layout = bnoracle::layout::nc;
  p.eps = 0.0;
  const std::vector<float> x{1.0F, 3.0F};
  bnoracle::bn_inputs in;
  in.src = x.data();
  const bnoracle::reference ref(p, bnoracle::bn_mode::forward_training, in);
  const auto y = ref.goldens("dst");
  const bool ok = y[0].value == -1.0F && y[1].value == 1.0F;
  std::printf("consumer: y = [%g, %g] %s\n", static_cast<double>(y[0].value),
              static_cast<double>(y[1].value), ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
