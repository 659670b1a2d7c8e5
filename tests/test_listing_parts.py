"""A source's listing: packed into flat arrays, and made of parts a cluster lists in parallel."""

import os

from petpipe.images import sources
from petpipe import sample_data


def _folder(tmp_path):
  sample_data.write_sample_folder(str(tmp_path), per_class=4, min_size=16, max_size=24, seed=3)
  tmp_path = tmp_path / "PetImages"
  (tmp_path / "Cat" / "deep").mkdir()
  (tmp_path / "Cat" / "deep" / "x.jpg").write_bytes(b"not really")
  (tmp_path / "notes.txt").write_text("beside the class folders")
  (tmp_path / "__MACOSX").mkdir()
  return sources.FolderSource(str(tmp_path), ["Cat", "Dog"])


def test_the_listings_of_the_parts_in_order_are_the_whole_listing(tmp_path):
  source = _folder(tmp_path)
  whole = source.listing()
  parts = [source.listing(p) for p in source.listing_parts()]
  assert source.listing_parts() == ["Cat", "Dog", sources.ROOT_PART]
  assert [c for part in parts for c in part.candidates] == list(whole.candidates)
  assert [f for part in parts for f in part.ignored_folders] == whole.ignored_folders


def test_following_links_lists_everything_as_one_part(tmp_path):
  source = sources.FolderSource(str(_folder(tmp_path).root), ["Cat", "Dog"], follow_links=True)
  assert source.listing_parts() == [sources.ALL_PARTS]


def test_a_candidate_list_gives_back_every_candidate_it_was_given():
  given = [sources.Candidate("Cat/a.jpg", "Cat", True),
           sources.Candidate("Dog/\udcff.jpg", "Dog", True, skip_reason="bad_name"),
           sources.Candidate("Cat/._b.jpg", "Cat", False, ignore_reason="junk"),
           sources.Candidate("notes.txt", "", False)]
  packed = sources.CandidateList(given)
  assert list(packed) == given and len(packed) == 4
  assert packed[1] == given[1] and packed[-1] == given[-1] and packed[1:3] == given[1:3]


def test_a_candidate_list_holds_a_file_in_fewer_bytes_than_its_path_and_16_more():
  paths = [f"Cat/{i:09d}.jpg" for i in range(20000)]
  packed = sources.CandidateList(sources.Candidate(p, "Cat", True) for p in paths)
  held = len(packed._paths) + packed._ends.itemsize * len(packed) + packed._classes.itemsize * len(
      packed) + len(packed._is_image)
  assert held / len(paths) <= len(paths[0]) + 16
