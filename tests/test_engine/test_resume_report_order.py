"""A resumed run's report equals an uninterrupted run's although its records
file lists the images in another order (the finished images first, in
test-set order, then the new ones; with several ranks, their timing)."""
from mmdag.engine.records import convergence


def test_convergence_does_not_depend_on_the_order_of_the_records():
    # fractions still correct after one step, as the records hold them (6
    # decimals): their mean is a rounding tie that the summation order decides
    after_one = [0.362493, 0.242081, 0.709727, 0.229408, 0.797911, 0.481929]
    records = [dict(image=f'img{k}', status='max_iters', trace=[1.0, v])
               for k, v in enumerate(after_one)]
    assert convergence(records) == convergence(records[::-1])
    assert convergence(records)['mean'][1] == round(sum(after_one) / 6, 6)
